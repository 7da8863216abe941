//! Deployment: the systemd units, the camera-agent launcher, the Debian
//! packages and the one-command demo.
//!
//! - `systemd-analyze verify` on both units, inside a scratch root where the
//!   packages were extracted, so every ExecStart= binary is staged in place;
//!   the same for the manual-install variant under /usr/local.
//! - The hardening exposure of both units, parsed from
//!   `systemd-analyze security --offline=yes`, must be 2.0 or less.
//! - The packages' contents, control data, conffiles and extracted tree;
//!   lintian must report no warning or error.
//! - The launcher's camera id: derived from udev's ID_SERIAL/ID_PATH, stable,
//!   pinned by CAMSTREAM_ID; configuration errors exit 78.
//! - `./demo` headless: both pattern cameras are recorded, at their two
//!   sizes, and Ctrl+C (SIGINT) stops every process it started.
//!
//! A missing system tool fails the test with the Debian package to install.
//! The udev rule itself is tested against a real vivid device in `vm`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use camstream_tests::{
    bin_path, recorded_conn_dirs, recorded_counts, recorded_frames, wait_until, workspace_root,
    Image, LoggedChild,
};

/// Hardening target from the deployment issue.
const MAX_EXPOSURE: f64 = 2.0;

/// Fails with the package to install when `tool` is not on PATH.
fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` not found: install it with `apt-get install {package}` (./run-tests does)"
    );
}

/// Runs `cmd`, returning its output; panics if it cannot be started.
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a packaging step and returns what it printed; a failure panics with
/// the command, its status and its output, at the caller's line.
#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    text(&camstream_tests::run_ok(cmd, "packaging step").stdout)
}

/// Writes `body` to `root/rel` with permissions `mode`, creating the
/// directories on the way (staging a file tree as a package would install it).
fn install(root: &Path, rel: &str, body: &[u8], mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The contents of a file of the tree under test.
fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The directory holding the agent and viewer binaries under test.
fn bin_dir() -> PathBuf {
    bin_path("agent")
        .parent()
        .expect("binaries live in target/<profile>")
        .to_path_buf()
}

/// The two packages, built once per test run from the binaries under test.
struct Debs {
    _dir: tempfile::TempDir,
    agent: PathBuf,
    viewer: PathBuf,
}

fn debs() -> &'static Debs {
    static DEBS: OnceLock<Debs> = OnceLock::new();
    DEBS.get_or_init(|| {
        require_tool("dpkg-deb", "dpkg");
        require_tool("dpkg-shlibdeps", "dpkg-dev");
        require_tool("fakeroot", "fakeroot");
        let dir = tempfile::tempdir().expect("temp dir");
        let bins = bin_dir();
        let stdout = run_ok(
            Command::new(workspace_root().join("packaging/build-deb.sh"))
                .arg("--bin-dir")
                .arg(&bins)
                .arg("--out")
                .arg(dir.path()),
        );
        let debs: Vec<PathBuf> = stdout.lines().map(PathBuf::from).collect();
        let find = |prefix: &str| {
            debs.iter()
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .unwrap_or_else(|| panic!("build-deb.sh printed no {prefix}*.deb: {stdout}"))
                .clone()
        };
        Debs {
            agent: find("camstream-agent_"),
            viewer: find("camstream-viewer_"),
            _dir: dir,
        }
    })
}

/// Extracts both packages into a fresh scratch root (`dpkg -x`).
fn extracted_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    for deb in [&debs().agent, &debs().viewer] {
        run_ok(Command::new("dpkg").arg("-x").arg(deb).arg(root.path()));
    }
    root
}

/// Copies the host's systemd units (targets, sockets, slices) into `root`, so
/// `systemd-analyze verify --root` can resolve After=/Wants= and the default
/// dependencies; our own units already there are kept.
fn add_system_units(root: &Path) {
    let host = Path::new("/lib/systemd/system");
    assert!(
        host.join("sysinit.target").exists(),
        "{} has no sysinit.target: install systemd (`apt-get install systemd`)",
        host.display()
    );
    let dest = root.join("lib/systemd/system");
    fs::create_dir_all(&dest).expect("create lib/systemd/system");
    for entry in fs::read_dir(host)
        .expect("read /lib/systemd/system")
        .flatten()
    {
        let target = dest.join(entry.file_name());
        if target.exists() {
            continue;
        }
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).expect("stat unit");
        if meta.file_type().is_symlink() {
            let link = fs::read_link(&path).expect("read link");
            std::os::unix::fs::symlink(link, &target).expect("copy symlink");
        } else if meta.is_file() {
            fs::copy(&path, &target).expect("copy unit");
        }
    }
}

/// `systemd-analyze verify --root=ROOT` on the given unit names.
fn verify(root: &Path, units: &[&str]) -> Output {
    require_tool("systemd-analyze", "systemd");
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .args(units))
}

#[test]
fn units_verify_with_the_packaged_binaries_in_place() {
    let root = extracted_root();
    add_system_units(root.path());
    let units = ["camera-agent@video0.service", "camera-viewer.service"];
    let out = verify(root.path(), &units);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed on the packaged units:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // The check has teeth: without the agent unit's ExecStart= program (the
    // launcher, which then execs /usr/bin/agent) the same verify must fail.
    fs::remove_file(
        root.path()
            .join("usr/libexec/camstream/camera-agent-launch"),
    )
    .expect("remove launcher");
    let out = verify(root.path(), &units);
    assert!(
        !out.status.success(),
        "verify passed although the launcher is missing: {}",
        text(&out.stderr)
    );
}

/// The README's manual install: binaries and launcher under /usr/local, the
/// units' /usr/ paths rewritten to /usr/local/ with sed.
#[test]
fn units_verify_for_the_manual_install_under_usr_local() {
    require_tool("sed", "sed");
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path();
    let repo = workspace_root();
    let bins = bin_dir();
    for (from, to) in [
        (bins.join("agent"), "usr/local/bin/agent"),
        (bins.join("viewer"), "usr/local/bin/viewer"),
        (
            repo.join("systemd/camera-agent-launch"),
            "usr/local/libexec/camstream/camera-agent-launch",
        ),
    ] {
        install(r, to, &read(&from), 0o755);
    }
    let units = r.join("etc/systemd/system");
    fs::create_dir_all(&units).expect("mkdir units");
    for unit in ["camera-agent@.service", "camera-viewer.service"] {
        // Exactly the README's command.
        let out = run_ok(
            Command::new("sed")
                .arg("s#/usr/bin/#/usr/local/bin/#; s#/usr/libexec/#/usr/local/libexec/#")
                .arg(repo.join("systemd").join(unit)),
        );
        assert!(
            out.contains("/usr/local/")
                && !out.contains("=/usr/bin/")
                && !out.contains(" /usr/bin/"),
            "sed left a /usr/bin path in {unit}:\n{out}"
        );
        fs::write(units.join(unit), out).expect("write unit");
    }
    add_system_units(r);
    let out = verify(r, &["camera-agent@video0.service", "camera-viewer.service"]);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed on the /usr/local units:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The overall exposure `systemd-analyze security --offline=yes` reports.
fn exposure(unit_file: &Path) -> f64 {
    require_tool("systemd-analyze", "systemd");
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit_file));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure in systemd-analyze security output for {}:\n{stdout}{}",
                unit_file.display(),
                text(&out.stderr)
            )
        });
    // "→ Overall exposure level for x.service: 1.6 OK 🙂"
    line.rsplit(": ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure from `{line}`"))
}

#[test]
fn units_hardening_exposure_is_at_most_2_0() {
    let dir = workspace_root().join("systemd");
    let mut report = Vec::new();
    for unit in ["camera-agent@.service", "camera-viewer.service"] {
        let score = exposure(&dir.join(unit));
        println!("{unit}: overall exposure {score}");
        report.push((unit, score));
    }
    for (unit, score) in &report {
        assert!(
            *score <= MAX_EXPOSURE,
            "{unit} exposure {score} is above {MAX_EXPOSURE}: a hardening setting was lost (run `systemd-analyze security --offline=yes systemd/{unit}`)"
        );
    }

    // The parser reads the real number: the same unit without its hardening
    // (only [Unit] and the Exec/Environment lines) must score far worse.
    let bare = tempfile::tempdir().expect("temp dir");
    let source = fs::read_to_string(dir.join("camera-viewer.service")).expect("read unit");
    let stripped: String = source
        .lines()
        .filter(|l| {
            l.starts_with('[')
                || ["Description=", "Exec", "Environment", "Type=", "WantedBy="]
                    .iter()
                    .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let bare_unit = bare.path().join("camera-viewer.service");
    fs::write(&bare_unit, stripped).expect("write bare unit");
    let bare_score = exposure(&bare_unit);
    println!("camera-viewer.service without hardening: overall exposure {bare_score}");
    assert!(
        bare_score > MAX_EXPOSURE,
        "an unhardened unit scored {bare_score}: the exposure parser is not reading the score"
    );
}

/// `dpkg-deb -f DEB FIELD`.
fn field(deb: &Path, name: &str) -> String {
    run_ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_string()
}

/// Paths in a package (`dpkg-deb -c`), as `/path` with their mode string.
fn contents(deb: &Path) -> Vec<(String, String)> {
    run_ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let path = cols.get(5)?.trim_start_matches('.');
            Some((
                path.trim_end_matches('/').to_string(),
                cols.first()?.to_string(),
            ))
        })
        .collect()
}

fn assert_has(list: &[(String, String)], path: &str, mode: &str, deb: &Path) {
    match list.iter().find(|(p, _)| p == path) {
        Some((_, m)) => assert_eq!(m, mode, "{path} in {} has mode {m}", deb.display()),
        None => panic!(
            "{} lacks {path}; it has:\n{}",
            deb.display(),
            list.iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[test]
fn packages_hold_the_expected_files() {
    let d = debs();
    let agent = contents(&d.agent);
    for (path, mode) in [
        ("/usr/bin/agent", "-rwxr-xr-x"),
        ("/usr/libexec/camstream/camera-agent-launch", "-rwxr-xr-x"),
        ("/lib/systemd/system/camera-agent@.service", "-rw-r--r--"),
        ("/lib/udev/rules.d/70-camera-agent.rules", "-rw-r--r--"),
        ("/etc/camstream/agent.env", "-rw-r--r--"),
        ("/usr/share/man/man1/agent.1.gz", "-rw-r--r--"),
        ("/usr/share/doc/camstream-agent/copyright", "-rw-r--r--"),
    ] {
        assert_has(&agent, path, mode, &d.agent);
    }
    let viewer = contents(&d.viewer);
    for (path, mode) in [
        ("/usr/bin/viewer", "-rwxr-xr-x"),
        ("/lib/systemd/system/camera-viewer.service", "-rw-r--r--"),
        ("/etc/camstream/viewer.env", "-rw-r--r--"),
        ("/usr/share/man/man1/viewer.1.gz", "-rw-r--r--"),
        ("/usr/share/doc/camstream-viewer/copyright", "-rw-r--r--"),
        // The certificate helper goes with the viewer: the CA key stays on
        // the workstation (docs/DESIGN.md).
        ("/usr/bin/camstream-cert", "-rwxr-xr-x"),
        ("/usr/share/man/man1/camstream-cert.1.gz", "-rw-r--r--"),
    ] {
        assert_has(&viewer, path, mode, &d.viewer);
    }
    // Each package holds only its own side.
    assert!(
        !agent
            .iter()
            .any(|(p, _)| p.contains("viewer") || p.contains("camstream-cert")),
        "agent package holds viewer files"
    );
    assert!(
        !viewer.iter().any(|(p, _)| p.contains("agent")),
        "viewer package holds agent files"
    );

    // Control data.
    assert_eq!(field(&d.agent, "Package"), "camstream-agent");
    assert_eq!(field(&d.viewer, "Package"), "camstream-viewer");
    for deb in [&d.agent, &d.viewer] {
        let depends = field(deb, "Depends");
        assert!(
            depends.contains("libc6"),
            "{} Depends lacks libc6: {depends}",
            deb.display()
        );
        let arch = field(deb, "Architecture");
        let host = run_ok(Command::new("dpkg").arg("--print-architecture"));
        assert_eq!(arch, host.trim(), "{} is for {arch}", deb.display());
    }
    // The config is a conffile, so upgrades keep the admin's edits.
    let scripts = tempfile::tempdir().expect("temp dir");
    run_ok(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&d.agent)
            .arg(scripts.path()),
    );
    let conffiles = fs::read_to_string(scripts.path().join("conffiles")).expect("agent conffiles");
    assert_eq!(conffiles.trim(), "/etc/camstream/agent.env");
    let postinst = fs::read_to_string(scripts.path().join("postinst")).expect("agent postinst");
    for needle in [
        "udevadm control --reload-rules",
        "daemon-reload",
        "udevadm trigger --subsystem-match=video4linux --action=add",
        "[ -d /run/systemd/system ]",
    ] {
        assert!(postinst.contains(needle), "agent postinst lacks `{needle}`");
    }
}

#[test]
fn packages_extract_into_a_scratch_root_with_working_files() {
    let root = extracted_root();
    let r = root.path();
    // The extracted binaries are the ones under test and they run.
    for bin in ["agent", "viewer", "camstream-cert"] {
        let path = r.join("usr/bin").join(bin);
        let out = run_ok(Command::new(&path).arg("--help"));
        assert!(out.contains("--"), "{bin} --help printed no options: {out}");
    }
    packaged_camstream_cert_makes_certificates(&r.join("usr/bin/camstream-cert"));
    // Every ExecStart= program of the units exists in the same root.
    for unit in ["camera-agent@.service", "camera-viewer.service"] {
        let body = fs::read_to_string(r.join("lib/systemd/system").join(unit)).expect("unit");
        let exec = body
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{unit} has no ExecStart="));
        let program = exec.split_whitespace().next().expect("ExecStart program");
        let staged = r.join(program.trim_start_matches('/'));
        let mode = fs::metadata(&staged)
            .unwrap_or_else(|e| panic!("{unit} starts {program}, missing from the package: {e}"))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{program} is not executable");
    }
    // The rule asks systemd for the agent template.
    let rule = fs::read_to_string(r.join("lib/udev/rules.d/70-camera-agent.rules")).expect("rule");
    assert!(rule.contains(r#"ENV{SYSTEMD_WANTS}+="camera-agent@%k.service""#));
    // Man pages are gzip files that decompress.
    require_tool("zcat", "gzip");
    for page in ["agent.1.gz", "viewer.1.gz", "camstream-cert.1.gz"] {
        let man = run_ok(Command::new("zcat").arg(r.join("usr/share/man/man1").join(page)));
        assert!(man.starts_with(".TH"), "{page} is not a man page");
    }
}

/// The packaged `camstream-cert` makes a CA, a viewer and a camera
/// certificate, keys 0600, and refuses to overwrite the CA.
fn packaged_camstream_cert_makes_certificates(cert: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8 temp path");
    run_ok(Command::new(cert).args(["ca", "--dir", d]));
    run_ok(Command::new(cert).args(["viewer", "--dir", d, "--ip", "127.0.0.1"]));
    run_ok(Command::new(cert).args(["camera", "--dir", d, "--id", "3"]));
    for stem in ["ca", "viewer", "camera-3"] {
        let pem = fs::read_to_string(dir.path().join(format!("{stem}.pem"))).expect("pem");
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE-----"),
            "{stem}.pem: {pem}"
        );
        let mode = fs::metadata(dir.path().join(format!("{stem}.key")))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{stem}.key has mode {mode:o}");
    }
    let again = run(Command::new(cert).args(["ca", "--dir", d]));
    assert!(
        !again.status.success(),
        "a second `ca` overwrote the CA: {}",
        text(&again.stderr)
    );
}

#[test]
fn packages_are_lintian_clean() {
    require_tool("lintian", "lintian");
    let d = debs();
    let out = run(Command::new("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(&d.agent)
        .arg(&d.viewer));
    let report = text(&out.stdout);
    println!("lintian:\n{report}");
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(
        out.status.success() && problems.is_empty(),
        "lintian found problems (fix them, or override with a reason in packaging/*.lintian-overrides):\n{report}{}",
        text(&out.stderr)
    );
}

/// A staged /usr tree with the launcher, a stub `agent` that prints its
/// arguments, and a stub `udevadm` answering with the given properties.
struct Launcher {
    dir: tempfile::TempDir,
}

impl Launcher {
    fn new(udev_props: &str) -> Launcher {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let launcher = read(&workspace_root().join("systemd/camera-agent-launch"));
        install(
            d,
            "usr/libexec/camstream/camera-agent-launch",
            &launcher,
            0o755,
        );
        let agent = "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n";
        install(d, "usr/bin/agent", agent.as_bytes(), 0o755);
        let props: String = udev_props
            .lines()
            .map(|l| format!("echo '{l}'\n"))
            .collect();
        let udevadm = format!("#!/bin/sh\n{props}");
        install(d, "stub/udevadm", udevadm.as_bytes(), 0o755);
        Launcher { dir }
    }

    /// Runs the launcher for `node` with only `env` set (plus PATH).
    fn run(&self, node: &str, env: &[(&str, &str)]) -> Output {
        let d = self.dir.path();
        let path = format!("{}:/usr/bin:/bin", d.join("stub").display());
        run(
            Command::new(d.join("usr/libexec/camstream/camera-agent-launch"))
                .arg(node)
                .env_clear()
                .env("PATH", path)
                .envs(env.iter().copied()),
        )
    }

    /// The agent's arguments, one per line, when the launcher succeeds.
    fn args(&self, node: &str, env: &[(&str, &str)]) -> Vec<String> {
        let out = self.run(node, env);
        assert!(
            out.status.success(),
            "launcher failed ({}): {}",
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout).lines().map(str::to_string).collect()
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

const SERVER: (&str, &str) = ("CAMSTREAM_SERVER", "127.0.0.1:5000");

#[test]
fn launcher_derives_a_stable_camera_id_from_udev_serial_and_path() {
    let cam_a =
        Launcher::new("ID_SERIAL=Logitech_C270_A1B2C3\nID_PATH=platform-xhci-hcd.0-usb-0:1:1.0");
    let cam_b =
        Launcher::new("ID_SERIAL=Logitech_C270_D4E5F6\nID_PATH=platform-xhci-hcd.0-usb-0:1:1.0");
    let args_a = cam_a.args("video0", &[SERVER]);
    assert_eq!(flag(&args_a, "--device"), Some("/dev/video0"));
    assert_eq!(flag(&args_a, "--server"), Some("127.0.0.1:5000"));
    assert_eq!(flag(&args_a, "--source"), Some("v4l2"));
    let id_a = flag(&args_a, "--id").expect("--id passed").to_string();
    let id_a: u8 = id_a.parse().expect("id is a u8");
    // Stable: the same camera gets the same id on every start.
    let again: u8 = flag(&cam_a.args("video0", &[SERVER]), "--id")
        .expect("--id")
        .parse()
        .expect("u8");
    assert_eq!(id_a, again);
    // Two cameras of the same model differ (for these serials; 256 ids can
    // collide by chance, which is why the launcher logs the id).
    let id_b: u8 = flag(&cam_b.args("video0", &[SERVER]), "--id")
        .expect("--id")
        .parse()
        .expect("u8");
    assert_ne!(
        id_a, id_b,
        "two cameras with different serials got the same id"
    );
    // The log says where the id came from and how to pin it.
    let log = text(&cam_a.run("video0", &[SERVER]).stderr);
    assert!(
        log.contains(&format!("camera id {id_a}"))
            && log.contains("CAMSTREAM_ID")
            && log.contains("/etc/camstream/video0.env"),
        "launcher log does not explain the id: {log}"
    );
    // Without udev data the node name still gives an id, not a fixed 0 for all.
    let bare = Launcher::new("");
    let id0 = flag(&bare.args("video0", &[SERVER]), "--id").map(str::to_string);
    let id1 = flag(&bare.args("video1", &[SERVER]), "--id").map(str::to_string);
    assert!(
        id0.is_some() && id0 != id1,
        "video0 and video1 both got id {id0:?}"
    );
}

#[test]
fn launcher_pins_the_id_and_passes_optional_settings() {
    let l = Launcher::new("ID_SERIAL=x\nID_PATH=y");
    let args = l.args(
        "video2",
        &[
            SERVER,
            ("CAMSTREAM_ID", "42"),
            ("CAMSTREAM_FORMAT", "mjpg"),
            ("CAMSTREAM_SIZE", "1280x720"),
            ("CAMSTREAM_FPS", "15"),
            ("CAMSTREAM_LEVEL", "6"),
            ("CAMSTREAM_ENCODING", "jpeg"),
            ("CAMSTREAM_QUALITY", "70"),
            ("CAMSTREAM_AGENT_ARGS", "--reopen --frames 9"),
        ],
    );
    assert_eq!(flag(&args, "--id"), Some("42"));
    assert_eq!(flag(&args, "--format"), Some("mjpg"));
    assert_eq!(flag(&args, "--size"), Some("1280x720"));
    assert_eq!(flag(&args, "--fps"), Some("15"));
    assert_eq!(flag(&args, "--level"), Some("6"));
    assert_eq!(flag(&args, "--encoding"), Some("jpeg"));
    assert_eq!(flag(&args, "--quality"), Some("70"));
    assert_eq!(flag(&args, "--frames"), Some("9"));
    assert!(args.iter().any(|a| a == "--reopen"), "{args:?}");
    // Unset optional settings pass no flag at all (never an empty value).
    let plain = l.args("video2", &[SERVER]);
    for unset in [
        "--format",
        "--size",
        "--fps",
        "--level",
        "--encoding",
        "--quality",
    ] {
        assert!(
            !plain.iter().any(|a| a == unset),
            "{unset} passed though unset: {plain:?}"
        );
    }
    assert!(
        !plain.iter().any(String::is_empty),
        "empty argument passed: {plain:?}"
    );
}

/// CAMSTREAM_TLS_*: bare names are files systemd handed over as
/// credentials (LoadCredential=tls:/etc/camstream/tls), absolute paths stay.
#[test]
fn launcher_passes_the_tls_files_from_the_credentials_directory() {
    let l = Launcher::new("ID_SERIAL=x");
    let tls = [
        ("CAMSTREAM_TLS_CA", "ca.pem"),
        ("CAMSTREAM_TLS_CERT", "camera-3.pem"),
        ("CAMSTREAM_TLS_KEY", "/root/keys/camera-3.key"),
    ];
    let creds = (
        "CREDENTIALS_DIRECTORY",
        "/run/credentials/camera-agent@video0.service",
    );
    let args = l.args("video0", &[&[SERVER, creds][..], &tls].concat());
    assert_eq!(
        flag(&args, "--tls-ca"),
        Some("/run/credentials/camera-agent@video0.service/tls_ca.pem")
    );
    assert_eq!(
        flag(&args, "--tls-cert"),
        Some("/run/credentials/camera-agent@video0.service/tls_camera-3.pem")
    );
    assert_eq!(flag(&args, "--tls-key"), Some("/root/keys/camera-3.key"));
    assert_eq!(flag(&args, "--tls-server-name"), None);
    // Outside systemd, bare names are in /etc/camstream/tls.
    let name = ("CAMSTREAM_TLS_SERVER_NAME", "workstation.local");
    let args = l.args("video0", &[&[SERVER, name][..], &tls].concat());
    assert_eq!(flag(&args, "--tls-ca"), Some("/etc/camstream/tls/ca.pem"));
    assert_eq!(flag(&args, "--tls-server-name"), Some("workstation.local"));
    // Plaintext by default.
    let plain = l.args("video0", &[SERVER]);
    assert!(!plain.iter().any(|a| a.starts_with("--tls")), "{plain:?}");
    // Two of three is a configuration error, not a silent plaintext agent.
    let out = l.run("video0", &[SERVER, tls[0], tls[1]]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("set all of CAMSTREAM_TLS_CA, CAMSTREAM_TLS_CERT and CAMSTREAM_TLS_KEY"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn launcher_rejects_bad_configuration_with_exit_78() {
    let l = Launcher::new("ID_SERIAL=x");
    for (env, why) in [
        (vec![], "CAMSTREAM_SERVER is not set"),
        (vec![SERVER, ("CAMSTREAM_ID", "256")], "out of range"),
        (vec![SERVER, ("CAMSTREAM_ID", "cam1")], "not a number"),
    ] {
        let out = l.run("video0", &env);
        assert_eq!(
            out.status.code(),
            Some(78),
            "{env:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(why),
            "{env:?}: {}",
            text(&out.stderr)
        );
    }
    let out = l.run("../sda", &[SERVER]);
    assert_eq!(
        out.status.code(),
        Some(78),
        "a path as device name was accepted"
    );
}

/// `./demo` with the binaries under test, headless, recording to `record`.
fn demo_command(record: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(workspace_root().join("demo"));
    cmd.arg("--bin-dir")
        .arg(bin_dir())
        .arg("--record")
        .arg(record)
        .args(extra)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("CAMSTREAM_DEMO_DURATION");
    cmd
}

/// Both pattern cameras were recorded, each at its own size.
fn assert_both_pattern_cameras_recorded(record: &Path, log: &str) {
    let dirs = recorded_conn_dirs(record);
    for (id, size) in [(1u8, (640, 480)), (2u8, (320, 240))] {
        let frames: Vec<PathBuf> = dirs
            .iter()
            .filter(|(i, _)| *i == id)
            .flat_map(|(_, d)| recorded_frames(d))
            .collect();
        assert!(
            !frames.is_empty(),
            "no frames recorded from pattern camera {id}; demo log:\n{log}"
        );
        let first = Image::read_bmp(&frames[0]);
        assert_eq!(first.size(), size, "camera {id}'s frame size");
    }
}

#[test]
fn demo_headless_records_both_pattern_cameras_and_stops_after_its_duration() {
    require_tool("bash", "bash");
    let record = tempfile::tempdir().expect("temp dir");
    let out = run(&mut demo_command(
        record.path(),
        &["--pattern", "--duration", "4"],
    ));
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "demo failed ({}):\n{log}", out.status);
    assert!(
        log.contains("no X11 display"),
        "demo did not say it runs without a display:\n{log}"
    );
    assert!(
        log.contains(&format!("in {}", record.path().display())),
        "demo did not report where the frames went:\n{log}"
    );
    assert_both_pattern_cameras_recorded(record.path(), &log);
}

#[test]
fn demo_stops_everything_on_ctrl_c() {
    let record = tempfile::tempdir().expect("temp dir");
    let mut demo = LoggedChild::spawn("demo", demo_command(record.path(), &["--pattern"]));
    assert!(
        demo.wait_for_line("press Ctrl+C", Duration::from_secs(60))
            .is_some(),
        "demo did not start:\n{}",
        demo.tail(40)
    );
    let recorded = wait_until(Duration::from_secs(60), || {
        let counts = recorded_counts(record.path());
        (counts.get(&1).is_some_and(|n| *n > 0) && counts.get(&2).is_some_and(|n| *n > 0))
            .then_some(())
    });
    assert!(
        recorded.is_some(),
        "no frames from both cameras:\n{}",
        demo.tail(40)
    );
    demo.signal("INT");
    let status = demo.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "demo did not exit cleanly on SIGINT ({status:?}):\n{}",
        demo.tail(40)
    );
    // Every process the demo started is gone (it logs their pids).
    let pids: Vec<u32> = demo
        .lines()
        .iter()
        .filter_map(|l| l.split("pid ").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        pids.len() >= 3,
        "demo logged {} pids, expected viewer + 2 agents",
        pids.len()
    );
    for pid in pids {
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        assert!(
            !alive,
            "process {pid} started by the demo still runs after Ctrl+C"
        );
    }
    assert_both_pattern_cameras_recorded(record.path(), &demo.lines().join("\n"));
}

/// Runs inside the container after boot: starts the viewer service and an
/// agent instance (pattern source, 20 frames), samples the agent's sandbox
/// from /proc while it runs, and writes `key=value` lines to /out/result.
const CONTAINER_SCRIPT: &str = r#"#!/bin/sh
out=/out/result
agent=camera-agent-test@video0.service
systemctl start camera-viewer.service
sleep 1
echo "viewer_state=$(systemctl show -P ActiveState camera-viewer.service)" >>$out
systemctl start $agent
for _ in $(seq 200); do
    pid=$(systemctl show -P MainPID $agent)
    # Wait until the launcher has exec'd the agent. (No awk: with a volatile
    # /etc its /etc/alternatives link is missing.)
    exe=$(readlink /proc/$pid/exe 2>/dev/null)
    if [ "$pid" != 0 ] && [ "${exe##*/}" = agent ]; then
        echo "agent_exe=$exe" >>$out
        echo "agent_uid=$(grep '^Uid:' /proc/$pid/status | cut -f 2)" >>$out
        echo "agent_seccomp=$(grep '^Seccomp:' /proc/$pid/status | cut -f 2)" >>$out
        echo "agent_nonewprivs=$(grep '^NoNewPrivs:' /proc/$pid/status | cut -f 2)" >>$out
        echo "agent_capeff=$(grep '^CapEff:' /proc/$pid/status | cut -f 2)" >>$out
        break
    fi
    sleep 0.05
done
for _ in $(seq 600); do
    state=$(systemctl show -P ActiveState $agent)
    [ "$state" = active ] || [ "$state" = activating ] || break
    sleep 0.1
done
echo "agent_result=$(systemctl show -P Result $agent)" >>$out
echo "agent_status=$(systemctl show -P ExecMainStatus $agent)" >>$out
systemctl stop camera-viewer.service
echo "viewer_result=$(systemctl show -P Result camera-viewer.service)" >>$out
echo "viewer_status=$(systemctl show -P ExecMainStatus camera-viewer.service)" >>$out
echo "recorded=$(find /var/lib/camstream-viewer/ -name '*.bmp' | wc -l)" >>$out
journalctl --no-pager -u $agent -u camera-viewer.service >/out/journal 2>&1
echo "done=yes" >>$out
systemctl poweroff
"#;

/// The hardened units, unchanged but for paths, run under a real systemd
/// (booted in a systemd-nspawn container that shares the host's network):
/// the agent unit, with its launcher, streams a pattern to the viewer unit,
/// which records it into its state directory; the agent runs as a dynamic
/// user under seccomp with no capabilities; both stop with status 0.
///
/// Only the agent unit's BindsTo=/After= on the camera device are removed
/// (there is no camera here); device access itself (DeviceAllow=) and the
/// udev start are tested in a booted guest with vivid (`hotplug`).
#[test]
fn units_run_hardened_under_systemd() {
    units_run_hardened(false);
}

/// The same, over mutual TLS: the certificates sit root-only in
/// /etc/camstream/tls, and each unit gets them through LoadCredential=
/// (the dynamic users could not read them otherwise).
#[test]
fn units_run_hardened_under_systemd_over_tls() {
    units_run_hardened(true);
}

fn units_run_hardened(tls: bool) {
    require_tool("systemd-nspawn", "systemd-container");
    let stage = tempfile::tempdir().expect("temp dir");
    let s = stage.path();
    let repo = workspace_root();
    let bins = bin_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();

    // /usr is the host's, read-only, in the container: our tree goes to /opt.
    install(s, "opt/bin/agent", &read(&bins.join("agent")), 0o755);
    install(s, "opt/bin/viewer", &read(&bins.join("viewer")), 0o755);
    install(
        s,
        "opt/libexec/camstream/camera-agent-launch",
        &read(&repo.join("systemd/camera-agent-launch")),
        0o755,
    );
    let agent_unit =
        String::from_utf8(read(&repo.join("systemd/camera-agent@.service"))).expect("utf-8 unit");
    let agent_unit: String = agent_unit
        .lines()
        .filter(|l| !l.starts_with("BindsTo="))
        .map(|l| {
            l.replace("After=dev-%i.device ", "After=")
                .replace("/usr/libexec/", "/opt/camstream/libexec/")
                + "\n"
        })
        .collect();
    assert!(agent_unit.contains("ExecStart=/opt/camstream/libexec/camstream/camera-agent-launch"));
    install(
        s,
        "units/camera-agent-test@.service",
        agent_unit.as_bytes(),
        0o644,
    );
    let viewer_unit = String::from_utf8(read(&repo.join("systemd/camera-viewer.service")))
        .expect("utf-8 unit")
        .replace("/usr/bin/viewer", "/opt/camstream/bin/viewer");
    install(
        s,
        "units/camera-viewer.service",
        viewer_unit.as_bytes(),
        0o644,
    );
    install(
        s,
        "units/camstream-check.service",
        b"[Service]\nType=oneshot\nExecStart=/camstream-check\n",
        0o644,
    );
    install(s, "camstream-check", CONTAINER_SCRIPT.as_bytes(), 0o755);
    let (agent_tls, viewer_tls) = if tls {
        let dir = s.join("etc/tls");
        let dir = dir.to_str().expect("utf-8 path");
        let cert = |args: &[&str]| {
            run_ok(
                Command::new(bin_dir().join("camstream-cert"))
                    .args(args)
                    .args(["--dir", dir]),
            )
        };
        cert(&["ca"]);
        cert(&["viewer", "--ip", "127.0.0.1"]);
        cert(&["camera", "--id", "7"]);
        let creds = "/run/credentials/camera-viewer.service";
        (
            "CAMSTREAM_ID=7\nCAMSTREAM_TLS_CA=ca.pem\nCAMSTREAM_TLS_CERT=camera-7.pem\nCAMSTREAM_TLS_KEY=camera-7.key\n".to_owned(),
            format!("CAMSTREAM_VIEWER_ARGS=--record /var/lib/camstream-viewer --tls-cert {creds}/tls_viewer.pem --tls-key {creds}/tls_viewer.key --tls-client-ca {creds}/tls_ca.pem\n"),
        )
    } else {
        (String::new(), String::new())
    };
    install(
        s,
        "etc/agent.env",
        format!(
            "CAMSTREAM_SERVER=127.0.0.1:{port}\nCAMSTREAM_SOURCE=pattern\nCAMSTREAM_SIZE=320x240\nCAMSTREAM_FPS=10\nCAMSTREAM_AGENT_ARGS=--frames 20\n{agent_tls}"
        )
        .as_bytes(),
        0o644,
    );
    install(
        s,
        "etc/viewer.env",
        format!("CAMSTREAM_LISTEN=127.0.0.1:{port}\n{viewer_tls}").as_bytes(),
        0o644,
    );
    fs::create_dir_all(s.join("out")).expect("mkdir out");
    // The units load /etc/camstream/tls as credentials; empty: plaintext.
    fs::create_dir_all(s.join("etc/tls")).expect("mkdir etc/tls");

    let mut cmd = Command::new("systemd-nspawn");
    cmd.args(["-D", "/", "--volatile=yes", "--register=no", "--keep-unit"])
        .args(["--console=passive", "-M"])
        .arg(format!("camstream-test-{}", std::process::id()))
        .arg(format!(
            "--bind-ro={}:/opt/camstream",
            s.join("opt").display()
        ))
        .arg(format!(
            "--bind-ro={}:/etc/camstream",
            s.join("etc").display()
        ))
        .arg(format!(
            "--bind-ro={}:/camstream-check",
            s.join("camstream-check").display()
        ))
        .arg(format!("--bind={}:/out", s.join("out").display()));
    for unit in [
        "camera-agent-test@.service",
        "camera-viewer.service",
        "camstream-check.service",
    ] {
        cmd.arg(format!(
            "--bind-ro={}:/etc/systemd/system/{unit}",
            s.join("units").join(unit).display()
        ));
    }
    // Boot to multi-user without the host's own services and prompts.
    cmd.args([
        "-b",
        "--",
        "systemd.unit=multi-user.target",
        "systemd.wants=camstream-check.service",
    ])
    .args([
        "systemd.mask=systemd-firstboot.service",
        "systemd.mask=getty@tty1.service",
    ])
    .args([
        "systemd.mask=postgresql.service",
        "systemd.mask=systemd-networkd.service",
    ]);
    let mut container = LoggedChild::spawn("systemd-nspawn", cmd);
    let exited = container.wait_exit(Duration::from_secs(180));
    let result = fs::read_to_string(s.join("out/result")).unwrap_or_default();
    let journal = fs::read_to_string(s.join("out/journal")).unwrap_or_default();
    let context = format!(
        "result:\n{result}\njournal:\n{journal}\ncontainer:\n{}",
        container.tail(30)
    );
    assert!(
        exited.is_some(),
        "the container did not power off within 180 s\n{context}"
    );
    let value = |key: &str| {
        result
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in the container's result\n{context}"))
            .to_string()
    };
    assert_eq!(value("done"), "yes", "{context}");
    assert_eq!(
        value("viewer_state"),
        "active",
        "viewer service did not start\n{context}"
    );
    assert_eq!(
        value("agent_exe"),
        "/opt/camstream/bin/agent",
        "launcher did not exec the agent\n{context}"
    );
    assert_ne!(value("agent_uid"), "0", "agent runs as root\n{context}");
    assert_eq!(
        value("agent_seccomp"),
        "2",
        "agent runs without a seccomp filter\n{context}"
    );
    assert_eq!(value("agent_nonewprivs"), "1", "{context}");
    assert_eq!(
        value("agent_capeff"),
        "0000000000000000",
        "agent has capabilities\n{context}"
    );
    assert_eq!(
        value("agent_result"),
        "success",
        "agent unit failed\n{context}"
    );
    assert_eq!(value("agent_status"), "0", "{context}");
    assert_eq!(
        value("viewer_result"),
        "success",
        "viewer unit failed\n{context}"
    );
    assert_eq!(value("viewer_status"), "0", "{context}");
    let recorded: u32 = value("recorded").parse().expect("a count");
    assert!(
        recorded >= 10,
        "viewer recorded {recorded} of the agent's 20 frames\n{context}"
    );
    if tls {
        assert!(
            journal.contains("over TLS") && journal.contains("TLS 1.3 only"),
            "the units did not speak TLS\n{context}"
        );
    }
}
