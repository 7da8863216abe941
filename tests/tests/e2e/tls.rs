//! Optional mutual TLS (issue 15), against a TLS stack we did not write:
//! OpenSSL, through Python's `ssl` module (`tests/interop/client.py
//! --tls-*`, `tests/interop/tls_server.py`), and certificates made by
//! `openssl req`/`openssl x509` as well as by our `camstream-cert`.
//!
//! - OpenSSL clients with no certificate, with another CA's, and in
//!   plaintext are each refused with a named log line while a TLS agent
//!   keeps streaming; one that never finishes its handshake is dropped by
//!   `--idle-timeout`.
//! - The same client with a camera certificate streams frames the viewer
//!   records byte for byte.
//! - Our agent verifies an OpenSSL server, and refuses one whose name,
//!   CA or validity is wrong, and a viewer that speaks no TLS, saying what to
//!   do; it also says so when the viewer refuses its certificate.
//! - openssl-made certificates work in both directions.
//! - A proxy flipping one byte mid-stream: that connection closes with a
//!   TLS error, the other camera goes on.
//! - A certificate for camera 3 cannot send camera 4.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use camstream_tests::certs::camstream_cert;
use camstream_tests::{
    bin_path, interop_script, recorded_conn_dirs, recorded_frames, run_ok, start_pattern_agent,
    testdata_frame, venv_python, LoggedChild, RecordingViewer, PATIENCE,
};

/// Certificates in a temp dir: `ca`, `viewer` (viewer.test, 127.0.0.1) and
/// `camera-N`, as `<stem>.pem` and `<stem>.key`. Also used by the window
/// test of TLS cameras (`windows::tls_cameras_*`) and `memory::`.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name)
            .to_str()
            .expect("utf-8 temp path")
            .to_owned()
    }

    /// `viewer --tls-*` arguments.
    pub(crate) fn viewer_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.s("viewer.pem"),
            "--tls-key".into(),
            self.s("viewer.key"),
            "--tls-client-ca".into(),
            self.s("ca.pem"),
        ]
    }

    /// `agent --tls-*` arguments for the camera certificate `stem`.
    pub(crate) fn agent_args(&self, stem: &str) -> Vec<String> {
        vec![
            "--tls-ca".into(),
            self.s("ca.pem"),
            "--tls-cert".into(),
            self.s(&format!("{stem}.pem")),
            "--tls-key".into(),
            self.s(&format!("{stem}.key")),
        ]
    }

    /// Made by our helper: a CA, the viewer, and cameras `ids`.
    pub(crate) fn helper(ids: &[u8]) -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let dir = pki.s("");
        camstream_cert(&["ca", "--dir", &dir]);
        camstream_cert(&[
            "viewer",
            "--dir",
            &dir,
            "--dns",
            "viewer.test",
            "--ip",
            "127.0.0.1",
        ]);
        for id in ids {
            camstream_cert(&["camera", "--dir", &dir, "--id", &id.to_string()]);
        }
        pki
    }

    /// Made by `openssl req` and `openssl x509` alone: a CA, the viewer and
    /// camera `id` (its name in a subjectAltName, as any CA would write it).
    fn openssl(id: u8) -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        openssl(
            pki.dir.path(),
            &format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 30"),
            &["-subj", "/CN=openssl test CA"],
        );
        let leaf = |stem: &str, ext: &str| {
            openssl(
                pki.dir.path(),
                &format!("req -new {ec} -keyout {stem}.key -out {stem}.csr"),
                &["-subj", &format!("/CN={stem}")],
            );
            std::fs::write(pki.path(&format!("{stem}.ext")), ext).expect("ext file");
            openssl(
                pki.dir.path(),
                &format!(
                    "x509 -req -in {stem}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out {stem}.pem -extfile {stem}.ext"
                ),
                &[],
            );
        };
        leaf(
            "viewer",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:viewer.test,IP:127.0.0.1\n",
        );
        leaf(
            &format!("camera-{id}"),
            &format!("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:camstream-camera-{id}.invalid\n"),
        );
        pki
    }
}

/// `openssl` with `words` (split at spaces) and then `args`, in `dir`.
fn openssl(dir: &Path, words: &str, args: &[&str]) {
    run_ok(
        Command::new("openssl")
            .args(words.split(' '))
            .args(args)
            .current_dir(dir),
        "making the test PKI with openssl",
    );
}

pub(crate) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A TLS viewer recording to a temp dir, with the helper's certificates.
fn tls_viewer(pki: &Pki, extra: &[&str]) -> RecordingViewer {
    let args = pki.viewer_args();
    let mut all = strs(&args);
    all.extend_from_slice(extra);
    RecordingViewer::start(&all)
}

/// A 320x240 pattern agent at 15 fps over TLS with camera certificate `stem`.
fn tls_agent(server: SocketAddr, id: u8, pki: &Pki, stem: &str, extra: &[&str]) -> LoggedChild {
    let args = pki.agent_args(stem);
    let mut all = strs(&args);
    all.extend_from_slice(extra);
    start_pattern_agent(server, id, "320x240", 15, &all)
}

/// The Python (OpenSSL) client sending `count` frames of the coffee photo as
/// camera `id`, with `tls` arguments (none: plaintext); returns the child.
fn python_client(
    server: SocketAddr,
    id: u8,
    tls: &[String],
    count: usize,
    out: &Path,
) -> LoggedChild {
    let mut cmd = Command::new(venv_python());
    cmd.arg(interop_script("client.py"))
        .args(["--server", &server.to_string(), "--id", &id.to_string()])
        .arg("--image")
        .arg(testdata_frame("coffee_640x480_noise.bgr"))
        .args(["--size", "640x480", "--count", &count.to_string()])
        .arg("--save-sent")
        .arg(out)
        .args(tls);
    LoggedChild::spawn(&format!("python client {id}"), cmd)
}

#[test]
fn openssl_clients_without_a_valid_certificate_are_refused_each_by_name() {
    let pki = Pki::helper(&[1, 30]);
    let other = Pki::helper(&[30]);
    let viewer = tls_viewer(&pki, &["--idle-timeout", "3"]);
    let _good = tls_agent(viewer.addr, 1, &pki, "camera-1", &[]);
    viewer.wait_recorded(1, 3);
    let sent = tempfile::tempdir().expect("temp dir");

    let ca = || vec!["--tls-ca".to_owned(), pki.s("ca.pem")];
    let cases: [(&str, Vec<String>, &str); 3] = [
        ("no certificate", ca(), "no client certificate"),
        (
            "another CA's certificate",
            [
                ca(),
                vec![
                    "--tls-cert".into(),
                    other.s("camera-30.pem"),
                    "--tls-key".into(),
                    other.s("camera-30.key"),
                ],
            ]
            .concat(),
            "not signed by the --tls-client-ca CA",
        ),
        ("plaintext", vec![], "not a TLS client"),
    ];
    for (what, tls, reason) in cases {
        let mark = viewer.child.line_count();
        let mut client = python_client(viewer.addr, 30, &tls, 3, sent.path());
        let line = viewer.expect_line(mark, &["dropped after 0 frames", reason]);
        assert!(line.contains("TLS handshake refused"), "{what}: {line}");
        client.wait_exit(PATIENCE);
        assert_eq!(viewer.recorded(30), 0, "{what}: a frame got through");
    }

    // A client that opens the connection and never says hello holds its
    // place only until --idle-timeout: the handshake counts.
    let mark = viewer.child.line_count();
    let silent = TcpStream::connect(viewer.addr).expect("connect");
    viewer.expect_line(mark, &["sent nothing for 3.0 s after connecting"]);
    drop(silent);

    // The good camera never stopped.
    let before = viewer.recorded(1);
    viewer.wait_recorded(1, before + 5);
}

#[test]
fn an_openssl_client_with_a_camera_certificate_streams_byte_for_byte() {
    let pki = Pki::helper(&[21]);
    let viewer = tls_viewer(&pki, &[]);
    let sent = tempfile::tempdir().expect("temp dir");
    let tls = [
        pki.agent_args("camera-21"),
        vec!["--tls-server-name".into(), "viewer.test".into()],
    ]
    .concat();
    let mut client = python_client(viewer.addr, 21, &tls, 3, sent.path());
    client.wait_success(Duration::from_secs(120));
    assert!(
        client
            .lines()
            .iter()
            .any(|l| l.contains("client: TLS TLSv1.3")),
        "{}",
        client.tail(5)
    );
    viewer.wait_recorded(21, 3);
    let sent_bmp = std::fs::read(sent.path().join("sent.bmp")).expect("sent.bmp");
    for (id, dir) in recorded_conn_dirs(viewer.record_dir()) {
        assert_eq!(id, 21);
        for frame in recorded_frames(&dir) {
            assert!(
                std::fs::read(&frame).expect("frame") == sent_bmp,
                "{} differs",
                frame.display()
            );
        }
    }
}

/// `tests/interop/tls_server.py` with `pki`'s viewer certificate, until
/// `frames` frames arrived; returns it once it listens, and its address.
fn openssl_server(pki: &Pki, frames: usize) -> (LoggedChild, SocketAddr) {
    // Built before the server's clock starts: a first build takes minutes.
    bin_path("agent");
    let mut cmd = Command::new(venv_python());
    cmd.arg(interop_script("tls_server.py"))
        .args([
            "--cert",
            &pki.s("viewer.pem"),
            "--key",
            &pki.s("viewer.key"),
        ])
        .args([
            "--client-ca",
            &pki.s("ca.pem"),
            "--frames",
            &frames.to_string(),
        ]);
    let server = LoggedChild::spawn("tls_server.py", cmd);
    let line = server
        .wait_for_line("listening on ", Duration::from_secs(30))
        .expect("tls_server.py listens");
    let addr = line
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("address");
    (server, addr)
}

#[test]
fn the_agent_verifies_an_openssl_server_and_says_what_is_wrong() {
    // openssl-made certificates on both sides.
    let pki = Pki::openssl(3);
    let (mut server, addr) = openssl_server(&pki, 3);
    let mut agent = tls_agent(
        addr,
        3,
        &pki,
        "camera-3",
        &["--tls-server-name", "viewer.test", "--frames", "3"],
    );
    let status = agent.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "agent: {status:?}\n{}\nserver:\n{}",
        agent.tail(10),
        server.tail(10)
    );
    server.wait_success(Duration::from_secs(30));
    assert!(
        server
            .lines()
            .iter()
            .any(|l| l.contains("frame 3 camera 3 320x240")),
        "{}",
        server.tail(10)
    );

    // Each wrong setting: the agent refuses, says what to do, and the
    // server never gets a frame.
    let other = Pki::helper(&[3]);
    let wrong_ca = [
        vec!["--tls-ca".to_owned(), other.s("ca.pem")],
        pki.agent_args("camera-3")[2..].to_vec(),
    ]
    .concat();
    let cases: [(Vec<String>, &str); 2] = [
        (
            [
                pki.agent_args("camera-3"),
                vec!["--tls-server-name".into(), "other.test".into()],
            ]
            .concat(),
            "the viewer's certificate is for viewer.test, 127.0.0.1, not other.test",
        ),
        (wrong_ca, "not signed by --tls-ca"),
    ];
    for (args, message) in cases {
        let (server, addr) = openssl_server(&pki, 1);
        let agent = start_pattern_agent(addr, 3, "320x240", 15, &strs(&args));
        let line = agent.wait_for_line(message, PATIENCE);
        assert!(
            line.is_some(),
            "agent never said `{message}`:\n{}",
            agent.tail(10)
        );
        assert!(
            server.wait_for_line("handshake failed", PATIENCE).is_some(),
            "{}",
            server.tail(10)
        );
        assert!(!server.lines().iter().any(|l| l.starts_with("frame ")));
    }
}

#[test]
fn the_agent_says_what_to_do_about_a_viewer_expired_refusing_it_or_without_tls() {
    let pki = Pki::helper(&[3]);
    // Re-issue the viewer's certificate, expired yesterday.
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.path("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(pki.path("ca.pem")).unwrap(),
        ca_key,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["viewer.test".to_owned()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(pki.path("viewer.pem"), cert.pem()).unwrap();
    std::fs::write(pki.path("viewer.key"), key.serialize_pem()).unwrap();

    let viewer = tls_viewer(&pki, &[]);
    let agent = tls_agent(
        viewer.addr,
        3,
        &pki,
        "camera-3",
        &["--tls-server-name", "viewer.test"],
    );
    assert!(
        agent
            .wait_for_line("the viewer's certificate has expired", PATIENCE)
            .is_some(),
        "{}",
        agent.tail(10)
    );
    assert_eq!(viewer.recorded(3), 0);

    // A viewer that trusts another CA for its clients: TLS 1.3 says so
    // only after the handshake, and the agent still reports it.
    let other = Pki::helper(&[3]);
    let picky = RecordingViewer::start(&[
        "--tls-cert",
        &other.s("viewer.pem"),
        "--tls-key",
        &other.s("viewer.key"),
        "--tls-client-ca",
        &other.s("ca.pem"),
    ]);
    let args = [
        vec!["--tls-ca".to_owned(), other.s("ca.pem")],
        pki.agent_args("camera-3")[2..].to_vec(),
        vec!["--tls-server-name".into(), "viewer.test".into()],
    ]
    .concat();
    let agent = start_pattern_agent(picky.addr, 3, "320x240", 15, &strs(&args));
    assert!(
        agent
            .wait_for_line("the viewer refused this agent's certificate", PATIENCE)
            .is_some(),
        "{}",
        agent.tail(10)
    );
    assert_eq!(picky.recorded(3), 0);

    let plain = RecordingViewer::start(&[]);
    let agent = tls_agent(
        plain.addr,
        3,
        &pki,
        "camera-3",
        &["--tls-server-name", "viewer.test"],
    );
    assert!(
        agent
            .wait_for_line("the viewer does not speak TLS", PATIENCE)
            .is_some(),
        "{}",
        agent.tail(10)
    );
}

#[test]
fn openssl_made_certificates_work_with_our_viewer_and_agent() {
    let pki = Pki::openssl(4);
    let viewer = tls_viewer(&pki, &[]);
    let _agent = tls_agent(
        viewer.addr,
        4,
        &pki,
        "camera-4",
        &["--tls-server-name", "viewer.test"],
    );
    viewer.wait_recorded(4, 5);
}

/// Forwards `listen` → `to`, flipping one bit of the byte at offset `flip_at`
/// of what the client sends. Runs until either side closes.
fn tampering_proxy(to: SocketAddr, flip_at: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else {
            return;
        };
        let Ok(server) = TcpStream::connect(to) else {
            return;
        };
        let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        thread::spawn(move || {
            let mut buf = vec![0; 64 << 10];
            let mut offset = 0;
            while let Ok(n) = c_in.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if (offset..offset + n).contains(&flip_at) {
                    buf[flip_at - offset] ^= 0x01;
                }
                offset += n;
                if s_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let (mut s_in, mut c_out) = (server, client);
        let _ = std::io::copy(&mut s_in, &mut c_out);
    });
    addr
}

#[test]
fn a_byte_flipped_on_the_way_closes_that_camera_with_a_tls_error_only() {
    let pki = Pki::helper(&[5, 6]);
    let viewer = tls_viewer(&pki, &[]);
    let _steady = tls_agent(
        viewer.addr,
        5,
        &pki,
        "camera-5",
        &["--tls-server-name", "viewer.test"],
    );
    viewer.wait_recorded(5, 2);
    // Well past the handshake, inside the frames.
    let proxy = tampering_proxy(viewer.addr, 300_000);
    let mark = viewer.child.line_count();
    let _tampered = tls_agent(
        proxy,
        6,
        &pki,
        "camera-6",
        &["--tls-server-name", "viewer.test"],
    );
    let line = viewer.expect_line(
        mark,
        &["camera 6", "TLS error: a record failed its integrity check"],
    );
    assert!(line.contains("dropped after"), "{line}");
    let before = viewer.recorded(5);
    viewer.wait_recorded(5, before + 5);
}

#[test]
fn a_certificate_for_camera_3_cannot_send_camera_4() {
    let pki = Pki::helper(&[3]);
    let viewer = tls_viewer(&pki, &[]);
    let mark = viewer.child.line_count();
    let agent = tls_agent(
        viewer.addr,
        4,
        &pki,
        "camera-3",
        &["--tls-server-name", "viewer.test"],
    );
    assert!(
        agent
            .wait_for_line("names camera 3, but --id is 4", PATIENCE)
            .is_some(),
        "{}",
        agent.tail(10)
    );
    viewer.expect_line(
        mark,
        &[
            "camera 4",
            "a frame for camera 4, but its TLS certificate names camera 3 only",
        ],
    );
    assert_eq!(viewer.recorded(4), 0);
    // The same certificate with its own id streams.
    let _agent = tls_agent(
        viewer.addr,
        3,
        &pki,
        "camera-3",
        &["--tls-server-name", "viewer.test"],
    );
    viewer.wait_recorded(3, 3);
}
