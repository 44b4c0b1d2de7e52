//! `mosn-ext`: MOSN's command line, for the hosts mosn-extension plugs into.
//!
//! ```text
//! mosn-ext check -c mosn.json                      validate offline (like nginx -t)
//! mosn-ext start --host envoy|nginx -c mosn.json   run the host in the foreground
//!          [--work-dir DIR] [--concurrency N] [--admin-port P] [--module-dir DIR]
//!          [--print-config]
//! mosn-ext xds -c mosn.json --out DIR [--work-dir DIR] [--admin-port P] [--module-dir DIR]
//!                                                  Envoy xDS resources (LDS/CDS files) with the
//!                                                  MOSN config inline, and their bootstrap
//! mosn-ext route-check -c mosn.json cases.json      test a route table (exit 1 on a mismatch)
//! mosn-ext fields [--markdown]                     every MOSN field and what it does here
//! ```

use mosn_extension::config::fields::{self, Support};
use mosn_extension::hostgen::{self, HostOptions};
use mosn_extension::Engine;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage:
  mosn-ext check -c mosn.json
  mosn-ext start --host envoy|nginx -c mosn.json [--work-dir DIR] [--concurrency N]
                 [--admin-port P] [--module-dir DIR] [--print-config]
  mosn-ext xds -c mosn.json --out DIR [--work-dir DIR] [--admin-port P] [--module-dir DIR]
  mosn-ext route-check -c mosn.json cases.json
  mosn-ext fields [--markdown]";

struct Args {
    cmd: String,
    config: Option<PathBuf>,
    host: Option<String>,
    work_dir: Option<PathBuf>,
    module_dir: Option<PathBuf>,
    concurrency: u32,
    admin_port: u16,
    print_config: bool,
    markdown: bool,
    /// `xds`: where the files go.
    out: Option<PathBuf>,
    /// Positional arguments (route-check's cases file).
    rest: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or("missing command")?;
    let mut a = Args {
        cmd,
        config: None,
        host: None,
        work_dir: None,
        module_dir: None,
        concurrency: 2,
        admin_port: 0,
        print_config: false,
        markdown: false,
        out: None,
        rest: Vec::new(),
    };
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-c" | "--config" => a.config = Some(val("-c")?.into()),
            "--host" => a.host = Some(val("--host")?),
            "--work-dir" => a.work_dir = Some(val("--work-dir")?.into()),
            "--module-dir" => a.module_dir = Some(val("--module-dir")?.into()),
            "--concurrency" => a.concurrency = val("--concurrency")?.parse().map_err(|_| "--concurrency needs a number")?,
            "--admin-port" => a.admin_port = val("--admin-port")?.parse().map_err(|_| "--admin-port needs a port")?,
            "--print-config" => a.print_config = true,
            "--out" => a.out = Some(val("--out")?.into()),
            "--markdown" => a.markdown = true,
            "-h" | "--help" => return Err(String::new()),
            other if !other.starts_with('-') => a.rest.push(other.to_string()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// Loads the config exactly as the hosts do (every filter and route built).
fn load(path: &Path) -> Result<Engine, ExitCode> {
    let text = mosn_extension::config::read_file(path);
    text.and_then(|t| Engine::load(&t)).map_err(|errs| {
        for e in &errs.0 {
            eprintln!("{}: {e}", path.display());
        }
        eprintln!("{}: configuration test failed ({} error{})", path.display(), errs.0.len(), if errs.0.len() == 1 { "" } else { "s" });
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("mosn-ext: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.cmd == "fields" {
        print_fields(args.markdown);
        return ExitCode::SUCCESS;
    }
    let Some(config) = args.config.clone() else {
        eprintln!("mosn-ext: -c mosn.json is required\n{USAGE}");
        return ExitCode::from(2);
    };
    match args.cmd.as_str() {
        "check" => match load(&config) {
            Ok(engine) => {
                for (path, why) in &engine.notes {
                    println!("{}: note: {path} changes nothing here: {why}", config.display());
                }
                // Fields one host can not honour (that host refuses the config at load).
                for host in ["envoy", "nginx"] {
                    for e in engine.check_host(host).err().map(|e| e.0).unwrap_or_default() {
                        println!("{}: warning: {host} refuses this config: {e}", config.display());
                    }
                }
                let cfg = &engine.config;
                for l in cfg.listeners.iter().filter(|l| l.router_config_name.is_none()) {
                    println!(
                        "{}: warning: {}: no proxy filter with a router_config_name, so every request gets 404 \
                         (GOHPNF left routing to Envoy; here routes live in servers[].routers)",
                        config.display(),
                        l.path
                    );
                }
                println!(
                    "{}: ok ({} listeners, {} routers, {} clusters)",
                    config.display(),
                    cfg.listeners.len(),
                    cfg.routers.len(),
                    cfg.clusters.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        "start" => start(&args, &config),
        "xds" => xds(&args, &config),
        "route-check" => route_check(&args, &config),
        other => {
            eprintln!("mosn-ext: unknown command {other}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Writes `bootstrap.yaml`, `cds.yaml` and `lds.yaml` into `--out`: CDS before LDS, each
/// renamed into place, so a running Envoy on that bootstrap sees each as one new version.
fn xds(args: &Args, config: &Path) -> ExitCode {
    let Some(out) = args.out.clone() else {
        eprintln!("mosn-ext: xds needs --out DIR\n{USAGE}");
        return ExitCode::from(2);
    };
    let engine = match load(config) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let module_dir = match module_dir(args, "envoy") {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("mosn-ext: {msg}");
            return ExitCode::from(1);
        }
    };
    let abs = |p: PathBuf| if p.is_absolute() { p } else { std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p) };
    let out = abs(out);
    let opts = HostOptions {
        config_path: abs(config.to_path_buf()),
        work_dir: abs(args.work_dir.clone().unwrap_or_else(|| out.clone())),
        module_dir: abs(module_dir),
        concurrency: args.concurrency.max(1),
        admin_port: args.admin_port,
    };
    // The version names the content: the same config gives the same version.
    let version = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.config.raw.to_string().hash(&mut h);
        format!("{:016x}", h.finish())
    };
    let x = hostgen::envoy::xds(&engine.config, &engine.config.raw, &opts, &out, &version);
    let write = |name: &str, text: &str| -> std::io::Result<()> {
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, out.join(name))
    };
    let written = std::fs::create_dir_all(&out)
        .and_then(|_| write("bootstrap.yaml", &x.bootstrap))
        .and_then(|_| write("cds.yaml", &x.cds))
        .and_then(|_| write("lds.yaml", &x.lds));
    match written {
        Ok(()) => {
            println!("{}: bootstrap.yaml, cds.yaml, lds.yaml (version {version})", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mosn-ext: cannot write into {}: {e}", out.display());
            ExitCode::from(1)
        }
    }
}

/// Writes `text` to `path` (its directory created) with mode 0600.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

fn start(args: &Args, config: &Path) -> ExitCode {
    let host = args.host.as_deref().unwrap_or("envoy");
    if host != "envoy" && host != "nginx" {
        eprintln!("mosn-ext: --host must be envoy or nginx, not {host}");
        return ExitCode::from(2);
    }
    let cfg = match load(config) {
        Ok(e) => e.config,
        Err(code) => return code,
    };
    let config_path = match std::fs::canonicalize(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mosn-ext: {}: {e}", config.display());
            return ExitCode::from(1);
        }
    };
    let module_dir = match module_dir(args, host) {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("mosn-ext: {msg}");
            return ExitCode::from(1);
        }
    };
    let work_dir = args.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("mosn-ext-{host}")));
    let abs = |p: PathBuf| if p.is_absolute() { p } else { std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p) };
    let opts = HostOptions {
        config_path,
        work_dir: abs(work_dir),
        module_dir: abs(module_dir),
        concurrency: args.concurrency.max(1),
        admin_port: args.admin_port,
    };
    let is_root = unsafe_geteuid_is_root();
    let (text, file) = match host {
        "envoy" => (hostgen::envoy::generate(&cfg, &opts), "envoy.yaml"),
        _ => (hostgen::nginx::generate(&cfg, &opts, is_root), "nginx.conf"),
    };
    if args.print_config {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    let conf_path = opts.work_dir.join(file);
    let prepared = std::fs::create_dir_all(&opts.work_dir).and_then(|_| std::fs::write(&conf_path, &text));
    // nginx reads certificates and keys from files: PEM text in mosn.json goes to the work
    // dir (keys readable by the owner only).
    let prepared = prepared.and_then(|_| {
        let files = if host == "nginx" { hostgen::nginx::tls_files(&cfg, &opts) } else { Vec::new() };
        files.iter().try_for_each(|(path, pem)| write_private(path, pem))
    });
    if let Err(e) = prepared {
        eprintln!("mosn-ext: cannot write {}: {e}", conf_path.display());
        return ExitCode::from(1);
    }
    eprintln!("mosn-ext: starting {host} with {} (logs: {})", conf_path.display(), opts.work_dir.display());
    // exec: the host replaces this process, so its PID is ours and Ctrl-C/SIGTERM reach it.
    let err = match host {
        "envoy" => Command::new(std::env::var("ENVOY_BIN").unwrap_or_else(|_| "envoy".into()))
            .arg("-c")
            .arg(&conf_path)
            .args(["--concurrency", &opts.concurrency.to_string()])
            .args(["--file-flush-interval-msec", "100", "--disable-hot-restart", "--log-level", "info"])
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", &opts.module_dir)
            .exec(),
        _ => Command::new(std::env::var("NGINX_BIN").unwrap_or_else(|_| "nginx".into()))
            .arg("-p")
            .arg(&opts.work_dir)
            .arg("-c")
            .arg(&conf_path)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .exec(),
    };
    eprintln!("mosn-ext: cannot start {host}: {err}");
    ExitCode::from(1)
}

/// `mosn-ext route-check -c mosn.json cases.json`: prints each mismatch, exits 1 if any.
fn route_check(args: &Args, config: &Path) -> ExitCode {
    let [cases] = args.rest.as_slice() else {
        eprintln!("mosn-ext: route-check needs one cases file\n{USAGE}");
        return ExitCode::from(2);
    };
    let engine = match load(config) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let text = match std::fs::read_to_string(cases) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mosn-ext: cannot read {cases}: {e}");
            return ExitCode::from(2);
        }
    };
    match mosn_extension::route_check::run(&engine, &text) {
        Ok(report) => {
            for m in &report.mismatches {
                println!("{cases}: case {:?}: {}", m.case, m.what);
            }
            println!("route-check: {} of {} cases as expected", report.passed, report.passed + report.failed);
            if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("mosn-ext: {cases}: {e}");
            ExitCode::from(2)
        }
    }
}

/// The files a host needs, by the make target that builds them.
fn module_files(host: &str) -> &'static [(&'static str, &'static str)] {
    match host {
        "envoy" => &[("libmosn_envoy.so", "make build-l7")],
        _ => &[("ngx_http_mosn_module.so", "make build-nginx-module"), ("mosn_extension.so", "make build-l7")],
    }
}

/// Where the host modules are: `--module-dir`, else the first directory holding all of them
/// among this binary's directory and the repository's `build/output` (where `make` puts
/// them; `target/release/mosn-ext` finds them there too). When one is missing, says which
/// file, where it looked and the make target that builds it.
fn module_dir(args: &Args, host: &str) -> Result<PathBuf, String> {
    let files = module_files(host);
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(d) = &args.module_dir {
        candidates.push(d.clone());
    } else if let Some(exe_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        candidates.push(exe_dir.clone());
        // target/<profile>/mosn-ext → <repo>/build/output
        if let Some(repo) = exe_dir.parent().and_then(Path::parent) {
            candidates.push(repo.join("build").join("output"));
        }
    }
    for dir in &candidates {
        if files.iter().all(|(f, _)| dir.join(f).is_file()) {
            return Ok(dir.clone());
        }
    }
    let first = candidates.first().cloned().unwrap_or_else(|| PathBuf::from("."));
    let (missing, target) = files.iter().find(|(f, _)| !first.join(f).is_file()).copied().unwrap_or(files[0]);
    let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    Err(format!("{missing} not found (looked in {}); build it with `{target}`, or pass --module-dir DIR", looked.join(", ")))
}

/// `mosn-ext fields`: the field table, plain or as the README's markdown.
fn print_fields(markdown: bool) {
    if markdown {
        print!("{}", fields::markdown());
        return;
    }
    for f in fields::FIELDS {
        let path = if f.object.is_empty() { f.name.to_string() } else { format!("{}.{}", f.object, f.name) };
        let what = match f.support {
            Support::Yes => format!("yes: {}", f.doc),
            Support::Refused(what) => format!("refused, not supported yet ({what})"),
            Support::Ignored(why) => format!("noted, changes nothing: {why}"),
        };
        println!("{path}\t{what}");
    }
}

fn unsafe_geteuid_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
