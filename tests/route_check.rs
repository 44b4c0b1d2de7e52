//! `mosn-ext route-check`: the cases file format and its mismatch reports.

use mosn_extension::route_check::run;
use mosn_extension::Engine;

const DEMO: &str = include_str!("../examples/unit-routing/mosn.json");
const CASES: &str = include_str!("../examples/unit-routing/route-cases.json");

#[test]
fn the_demo_cases_hold() {
    let e = Engine::load(DEMO).unwrap();
    let r = run(&e, CASES).unwrap();
    assert!(r.mismatches.is_empty(), "{:?}", r.mismatches);
    assert_eq!((r.passed, r.failed), (5, 0));
}

#[test]
fn each_mismatch_is_reported() {
    let e = Engine::load(DEMO).unwrap();
    let cases = r#"{"cases": [
        {"name": "wrong cluster", "request": {"headers": {"uid": "2"}}, "expect": {"cluster": "s2", "status": 404}},
        {"name": "right", "request": {"headers": {"uid": "2"}}, "expect": {"cluster": "s1"}},
        {"name": "bad", "request": "GET /"}
    ]}"#;
    let r = run(&e, cases).unwrap();
    assert_eq!((r.passed, r.failed), (1, 2));
    let text: Vec<String> = r.mismatches.iter().map(|m| format!("{}: {}", m.case, m.what)).collect();
    assert!(text.contains(&"wrong cluster: cluster: want \"s2\", got \"s1\"".to_string()), "{text:?}");
    assert!(text.contains(&"wrong cluster: status: want \"404\", got (none)".to_string()), "{text:?}");
    assert!(text.iter().any(|t| t.starts_with("bad: needs \"request\"")), "{text:?}");
    assert!(run(&e, "{").is_err());
}
