//! `config`: arbitrary bytes into the config loader (`Engine::load`, what `mosn-ext check`
//! and both hosts use). It must never panic: every input is a config or a list of errors
//! with JSON paths. A config that loads also routes one request.

use mosn_extension::Engine;

pub fn run(data: &[u8]) {
    if super::resolves_names(data) {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Engine::load(text) {
        Ok(engine) => {
            for i in 0..engine.listeners.len() {
                let r = super::Request {
                    headers: vec![(b":method", b"GET"), (b":path", b"/a/../b?c"), (b":authority", b"example.com")],
                    body: b"",
                    end_of_stream: true,
                    outcomes: vec![mosn_extension::UpstreamOutcome::Response(200)],
                    downstream: b"127.0.0.1:1234",
                };
                super::drive(&engine, i, &r);
            }
        }
        Err(errs) => assert!(!errs.0.is_empty(), "a refused config names at least one error"),
    }
}
