//! A peer on the far side of a cable the test can cut: [`NetNs`] is a
//! network namespace joined to this machine by a veth pair, so a process
//! started in it ([`NetNs::command`]) talks TCP to the host over a real link.
//! Setting one end of the link down drops every packet, both ways, without
//! a FIN or an RST: what a camera node that loses power or Wi-Fi does to its
//! connection.
//!
//! ```text
//!  host namespace                         namespace camtest-<pid>-<n>
//!  camt<X>h 10.231.X.1/30  ◄── veth ──►  camt<X>n 10.231.X.2/30, lo
//! ```
//!
//! - **Only this machine.** The addresses exist only on the two ends of the
//!   pair; the namespace has no other interface and no default route, so
//!   nothing it sends can leave the pair.
//! - **Parallel.** `X` (0–255) is claimed by creating the host end
//!   `camt<X>h`: interface names are unique in a namespace, so two fixtures,
//!   in this process or another, never get the same subnet.
//! - **Clean.** Dropping the fixture deletes the pair and the namespace, also
//!   while a test panics. A test process killed outright (Ctrl+C on `cargo
//!   test`) cannot clean up; the next fixture deletes the namespaces of test
//!   processes that no longer exist.
//! - **Shaped.** [`NetNs::set_ns_qdisc`] and [`NetNs::set_host_qdisc`] put a
//!   `tc` qdisc (a `tbf` token bucket, say) on either end's egress, and
//!   replace it while traffic flows: a link narrower than the camera, or one
//!   whose rate changes.
//! - **Delayed.** [`NetNs::create_delayed`] joins the two ends with TUN
//!   devices and a [`DelayLine`] in this process instead of a veth pair: a
//!   long round trip where the kernel has no netem qdisc.
//! - **Needs root** (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's `ip`.
//!   Without them [`NetNs::create`] panics saying what is missing: a test that
//!   cannot cut a link must fail, never pass without checking anything.

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::delay_line::{open_tun, open_tun_in, DelayLine};
use crate::wait::{wait_until, PATIENCE};

/// Prefix of the namespaces this module creates: `camtest-<pid>-<n>`.
const NS_PREFIX: &str = "camtest-";

/// A network namespace behind a veth pair; see the module doc.
/// Dropping it deletes both.
pub struct NetNs {
    // Declared before `ns`, so dropped first: the pair goes, then the namespace.
    veth: Veth,
    ns: Namespace,
}

/// How the two ends are joined.
enum Kind {
    /// A veth pair: packets cross at once.
    Veth,
    /// Two TUN devices joined by this process, which holds each packet for
    /// a while ([`DelayLine`]); dropping it deletes both devices.
    Delayed { _line: DelayLine },
}

impl NetNs {
    /// Creates the namespace and the pair, with both ends and the
    /// namespace's `lo` up, and waits until the link carries packets.
    /// Panics, saying what is missing, if this machine or user cannot.
    pub fn create() -> NetNs {
        NetNs::create_with(None)
    }

    /// Like [`create`](NetNs::create), but the link holds every packet the
    /// namespace sends for `delay` before the host gets it (and the host's
    /// for `delay_back`): a long round trip, on kernels without netem. The
    /// ends are TUN devices joined by a [`DelayLine`] thread pair in this
    /// process; everything else (addresses, qdiscs, cutting) is as with a
    /// veth pair.
    pub fn create_delayed(delay: Duration, delay_back: Duration) -> NetNs {
        NetNs::create_with(Some((delay, delay_back)))
    }

    fn create_with(delay: Option<(Duration, Duration)>) -> NetNs {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        // `ip netns add` sets up /run/netns on first use; two at once in one
        // process could race on that mount.
        static CREATING: Mutex<()> = Mutex::new(());
        let _creating = CREATING.lock().unwrap_or_else(|p| p.into_inner());

        delete_namespaces_of_dead_tests();
        let pid = std::process::id();
        let name = format!("{NS_PREFIX}{pid}-{}", SERIAL.fetch_add(1, Ordering::SeqCst));
        let ns = Namespace::add(name);
        let veth = Veth::add(&ns, pid, delay);
        let net = NetNs { veth, ns };
        ip_ok(&[
            "addr",
            "add",
            &format!("{}/30", net.host_addr()),
            "dev",
            &net.veth.host_dev,
        ]);
        net.ip_ns(&[
            "addr",
            "add",
            &format!("{}/30", net.ns_addr()),
            "dev",
            &net.veth.ns_dev,
        ]);
        net.ip_ns(&["link", "set", "lo", "up"]);
        net.restore();
        net
    }

    /// The host's end of the link, 10.231.X.1.
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.veth.subnet, 1)
    }

    /// The namespace's end of the link, 10.231.X.2.
    pub fn ns_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.veth.subnet, 2)
    }

    /// The namespace's name, `camtest-<pid>-<n>`.
    pub fn name(&self) -> &str {
        &self.ns.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec
    /// NAME program`); add its arguments with `.arg(s)`. `ip` execs the
    /// program, so the child's pid is the program's and signals reach it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.name]).arg(program);
        cmd
    }

    /// Sets the namespace's end down: the namespace loses its route to the
    /// host and the host's end loses its carrier. Nothing crosses, and
    /// neither side is told.
    pub fn cut_ns_side(&self) {
        self.ip_ns(&["link", "set", &self.veth.ns_dev, "down"]);
    }

    /// Sets the host's end down: the host loses its route to the namespace
    /// and the namespace's end loses its carrier, keeping its own route (its
    /// packets go out and vanish).
    pub fn cut_host_side(&self) {
        ip_ok(&["link", "set", &self.veth.host_dev, "down"]);
    }

    /// Sets both ends up and waits until both report the link up (carrier
    /// on both sides), so packets cross again.
    pub fn restore(&self) {
        ip_ok(&["link", "set", &self.veth.host_dev, "up"]);
        self.ip_ns(&["link", "set", &self.veth.ns_dev, "up"]);
        let up = wait_until(PATIENCE, || {
            let host = ip(&["-o", "link", "show", "dev", &self.veth.host_dev]);
            let ns = ip(&[
                "-n",
                &self.ns.name,
                "-o",
                "link",
                "show",
                "dev",
                &self.veth.ns_dev,
            ]);
            [host, ns]
                .iter()
                .all(|out| out.status.success() && link_is_up(&stdout(out)))
                .then_some(())
        });
        up.unwrap_or_else(|| {
            panic!(
                "the link {} <-> {} (namespace {}) did not come up within {PATIENCE:?}",
                self.veth.host_dev, self.veth.ns_dev, self.ns.name
            )
        });
    }

    /// Sets the root qdisc of the namespace's end, which shapes what the
    /// namespace sends, to `qdisc` (`tc` words, e.g. `["tbf", "rate",
    /// "100mbit", "burst", "64kb", "latency", "20ms"]`), replacing the one
    /// there at once, also while traffic flows. Panics with tc's error.
    pub fn set_ns_qdisc(&self, qdisc: &[&str]) {
        tc_ok(Some(&self.ns.name), &self.veth.ns_dev, qdisc);
    }

    /// Like [`set_ns_qdisc`](NetNs::set_ns_qdisc), for the host's end: what
    /// the host sends into the namespace.
    pub fn set_host_qdisc(&self, qdisc: &[&str]) {
        tc_ok(None, &self.veth.host_dev, qdisc);
    }

    /// True if `tc` accepts `qdisc` on the namespace's end (a kernel may
    /// lack a scheduler, e.g. `netem`: CONFIG_NET_SCH_NETEM). When it does,
    /// the qdisc is set, as by [`set_ns_qdisc`](NetNs::set_ns_qdisc).
    pub fn try_ns_qdisc(&self, qdisc: &[&str]) -> bool {
        tc(Some(&self.ns.name), &self.veth.ns_dev, qdisc)
            .status
            .success()
    }

    /// `ip -n NAME ARGS`: `ip` inside the namespace.
    fn ip_ns(&self, args: &[&str]) {
        let mut all = vec!["-n", self.ns.name.as_str()];
        all.extend_from_slice(args);
        ip_ok(&all);
    }
}

/// A named network namespace (`ip netns add`); dropping it deletes it.
struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates it; the first thing that needs privileges, so a missing
    /// privilege or a missing `ip` is reported here.
    fn add(name: String) -> Namespace {
        let out = ip(&["netns", "add", &name]);
        if !out.status.success() {
            panic!(
                "cannot create network namespace {name} (`ip netns add {name}`: {}). \
                 The dead-peer tests need root, or CAP_SYS_ADMIN and CAP_NET_ADMIN, \
                 to create network namespaces and veth pairs (this process runs as uid {}); \
                 ./run-tests runs them as root",
                stderr(&out).trim(),
                euid()
            );
        }
        Namespace { name }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let out = ip(&["netns", "del", &self.name]);
        if !out.status.success() {
            eprintln!(
                "cannot delete network namespace {}: {}",
                self.name,
                stderr(&out).trim()
            );
        }
    }
}

/// A veth pair from the host into a namespace, on subnet 10.231.X.0/30;
/// dropping it deletes the pair (deleting one end deletes both).
struct Veth {
    subnet: u8,
    host_dev: String,
    ns_dev: String,
    kind: Kind,
}

impl Veth {
    /// Claims the first free X, starting from one picked by `pid` so that
    /// parallel test processes rarely try the same ones.
    /// With `delay`, the pair is two TUN devices joined by a [`DelayLine`]
    /// (namespace to host, host to namespace) instead of a veth pair.
    fn add(ns: &Namespace, pid: u32, delay: Option<(Duration, Duration)>) -> Veth {
        let first = pid.wrapping_mul(37) % 256;
        for subnet in (0..256u32).map(|i| ((first + i) % 256) as u8) {
            // A subnet someone configured by hand is not ours to shadow.
            let prefix = format!("10.231.{subnet}.0/30");
            if !stdout(&ip(&["-o", "-4", "addr", "show", "to", &prefix]))
                .trim()
                .is_empty()
            {
                continue;
            }
            let host_dev = format!("camt{subnet}h");
            let ns_dev = format!("camt{subnet}n");
            if let Some((there, back)) = delay {
                // The host's device claims the name, as `ip link add` does
                // for a veth: TUNSETIFF on a name in use fails.
                let Ok(host_tun) = open_tun(&host_dev) else {
                    continue;
                };
                let ns_tun = open_tun_in(&ns.name, &ns_dev).unwrap_or_else(|e| {
                    panic!(
                        "cannot create TUN device {ns_dev} in namespace {}: {e}",
                        ns.name
                    )
                });
                let line = DelayLine::start(ns_tun, host_tun, there, back)
                    .unwrap_or_else(|e| panic!("cannot start the delay line: {e}"));
                return Veth {
                    subnet,
                    host_dev,
                    ns_dev,
                    kind: Kind::Delayed { _line: line },
                };
            }
            let out = ip(&[
                "link", "add", &host_dev, "type", "veth", "peer", "name", &ns_dev, "netns",
                &ns.name,
            ]);
            if out.status.success() {
                return Veth {
                    subnet,
                    host_dev,
                    ns_dev,
                    kind: Kind::Veth,
                };
            }
            if !stderr(&out).contains("File exists") {
                panic!(
                    "cannot create the veth pair {host_dev} <-> {ns_dev} into namespace {}: {}",
                    ns.name,
                    stderr(&out).trim()
                );
            }
        }
        panic!("no free subnet 10.231.X.0/30: every veth name camt<X>h exists (left over by killed test runs? `ip link`)")
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // TUN devices go with their files, when `kind` drops.
        if matches!(self.kind, Kind::Delayed { .. }) {
            return;
        }
        let out = ip(&["link", "del", &self.host_dev]);
        if !out.status.success() {
            eprintln!(
                "cannot delete veth {}: {}",
                self.host_dev,
                stderr(&out).trim()
            );
        }
    }
}

/// Deletes the namespaces `camtest-<pid>-<n>` whose test process is gone
/// (killed before its fixtures were dropped). Deleting a namespace that
/// nothing runs in destroys its veth end, and with it the host's end.
fn delete_namespaces_of_dead_tests() {
    let list = stdout(&ip(&["netns", "list"]));
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// This process's effective uid, for the message when privileges are
/// missing (`/proc/self` belongs to it).
fn euid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or_else(|_| "?".into(), |m| m.uid().to_string())
}

/// `ip -o link show` says the link is up: administratively and with carrier.
fn link_is_up(line: &str) -> bool {
    let flags = line
        .split('<')
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .unwrap_or("");
    flags.split(',').any(|f| f == "UP") && flags.split(',').any(|f| f == "LOWER_UP")
}

/// Runs `ip ARGS`; panics only if `ip` cannot be run at all.
fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `ip {}`: {e} (the dead-peer tests need iproute2: apt-get install iproute2)",
            args.join(" ")
        )
    })
}

/// Runs `ip ARGS`; panics with its stderr if it fails.
fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        stderr(&out).trim()
    );
}

/// `tc [-n NS] qdisc replace dev DEV root QDISC...`; panics only if `tc`
/// cannot be run at all.
fn tc(ns: Option<&str>, dev: &str, qdisc: &[&str]) -> Output {
    let mut cmd = Command::new("tc");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["qdisc", "replace", "dev", dev, "root"])
        .args(qdisc);
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (the slow-link tests need iproute2's tc: apt-get install iproute2)")
    })
}

/// Like [`tc`]; panics with its stderr if it fails.
fn tc_ok(ns: Option<&str>, dev: &str, qdisc: &[&str]) {
    let out = tc(ns, dev, qdisc);
    assert!(
        out.status.success(),
        "`tc qdisc replace dev {dev} root {}` failed: {} (is that scheduler in this kernel? \
         zcat /proc/config.gz | grep NET_SCH)",
        qdisc.join(" "),
        stderr(&out).trim()
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[cfg(test)]
mod tests {
    use super::link_is_up;

    #[test]
    fn link_is_up_needs_both_up_and_carrier() {
        let up = "8: camt7h@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP";
        let no_carrier =
            "8: camt7h@if2: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue state DOWN";
        let down = "8: camt7h@if2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN";
        assert!(link_is_up(up));
        assert!(!link_is_up(no_carrier));
        assert!(!link_is_up(down));
    }
}
