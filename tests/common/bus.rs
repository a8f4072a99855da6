//! Private bus daemons for tests: a custom-config bus and a real `--session`
//! bus, each with its own service directory, activating planted services
//! with `dbus-send`. Never the host's buses. Every daemon, activation client
//! and activated service is killed on drop, panics included.
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private bus with its temp dir; kills its process tree when dropped.
pub struct Bus {
    pub dir: tempfile::TempDir,
    daemon: Child,
    pub address: String,
    pub service_dir: PathBuf,
    clients: Vec<Child>,
    /// Holds the launch helper of [`Bus::with_launch_helper`].
    helper_dir: Option<tempfile::TempDir>,
}

/// Pids below `root` with their depth (1 = its child), by a `/proc` stat scan.
fn descendants(root: u32) -> Vec<(u32, usize)> {
    let proc = osquery_dbus::sources::proc::Proc::new("/proc");
    let mut parent = std::collections::HashMap::new();
    for pid in proc.pids().unwrap_or_default() {
        if let Ok(st) = proc.stat(pid) {
            parent.insert(pid, st.ppid);
        }
    }
    let mut out = Vec::new();
    for &pid in parent.keys() {
        let mut cur = pid;
        for depth in 1..64 {
            match parent.get(&cur) {
                Some(&p) if p == root => {
                    out.push((pid, depth));
                    break;
                }
                Some(&p) if p > 1 => cur = p,
                _ => break,
            }
        }
    }
    out
}

fn kill(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        for c in &mut self.clients {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deepest first, so every process is reaped by its own parent (the
        // service by its babysitter, which then exits and is reaped by the
        // bus) instead of piling up as zombies of pid 1.
        let mut below = descendants(self.daemon.id());
        below.sort_by_key(|&(_, depth)| std::cmp::Reverse(depth));
        let mut last_depth = None;
        for (pid, depth) in below.into_iter().filter(|&(_, d)| d > 1) {
            if last_depth.is_some_and(|d| d != depth) {
                std::thread::sleep(Duration::from_millis(30));
            }
            last_depth = Some(depth);
            kill(pid);
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while !descendants(self.daemon.id()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for (pid, _) in descendants(self.daemon.id()) {
            kill(pid);
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

pub fn write_exec(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

impl Bus {
    fn start(mut cmd: Command, dir: tempfile::TempDir, service_dir: PathBuf) -> Bus {
        std::fs::create_dir_all(&service_dir).expect("service dir");
        let mut daemon = cmd
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut line = String::new();
        let stdout = daemon.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("address");
        let address = line.trim().to_string();
        assert!(
            address.starts_with("unix:"),
            "bus did not start: {address:?}"
        );
        Bus {
            dir,
            daemon,
            address,
            service_dir,
            clients: Vec::new(),
            helper_dir: None,
        }
    }

    /// A bus from our own config: `<type>custom</type>`.
    pub fn custom() -> Bus {
        Bus::custom_with("")
    }

    /// A custom bus that activates through a launch helper, as the system
    /// bus does: `<servicehelper>` names `dbus-daemon-launch-helper` in the
    /// temp dir, which dbus-daemon runs as `helper <service name>` (it
    /// needs `User=` in the service file, and no `<user>` or system type).
    /// The helper is a copy of `sh` (so its executable has the helper's
    /// name) and runs the script named after the service from its working
    /// directory, the daemon's: [`Bus::plant_helped`] writes it.
    pub fn with_launch_helper() -> Bus {
        let tmp = tempfile::tempdir().expect("tempdir");
        let helper = tmp.path().join("dbus-daemon-launch-helper");
        std::fs::copy("/bin/sh", &helper).expect("copy sh");
        let mut bus = Bus::custom_with(&format!(
            "<servicehelper>{}</servicehelper>",
            helper.display()
        ));
        bus.helper_dir = Some(tmp);
        bus
    }

    /// Plants a service for the launch helper: its file (with `User=root`)
    /// and the helper's script for it, which does the real helper's job
    /// with shell builtins only (no child processes): finds the file by the
    /// service name and execs its `Exec=` line in the same process. First
    /// it waits for a line on the returned FIFO, so a test can look at the
    /// helper while it runs.
    pub fn plant_helped(&self, name: &str, exec: &str) -> PathBuf {
        self.write_service(name, &format!("Exec={exec}\nUser=root\n"));
        let gate = self.dir.path().join(format!("{name}.gate"));
        let made = Command::new("mkfifo").arg(&gate).status().expect("mkfifo");
        assert!(made.success(), "mkfifo {}", gate.display());
        let script = format!(
            "read -r _ < \"{}\"\n\
             while IFS= read -r line; do\n  case $line in Exec=*) exec ${{line#Exec=}} ;; esac\n\
             done < \"{}/$0.service\"\nexit 2\n",
            gate.display(),
            self.service_dir.display()
        );
        std::fs::write(self.dir.path().join(name), script).expect("helper script");
        gate
    }

    fn custom_with(extra: &str) -> Bus {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let conf = private_config(&d, &format!("{d}/services"), extra);
        std::fs::write(dir.path().join("bus.conf"), conf).expect("bus.conf");
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg(format!("--config-file={d}/bus.conf"))
            .current_dir(dir.path());
        let services = dir.path().join("services");
        Bus::start(cmd, dir, services)
    }

    /// A real `--session` bus, its service dir under `XDG_DATA_HOME`.
    pub fn session() -> Bus {
        let dir = tempfile::tempdir().expect("tempdir");
        let xdg = dir.path().join("xdg");
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg("--session")
            .arg(format!(
                "--address=unix:path={}/s.sock",
                dir.path().display()
            ))
            .env("XDG_DATA_HOME", &xdg);
        Bus::start(cmd, dir, xdg.join("dbus-1/services"))
    }

    pub fn pid(&self) -> u32 {
        self.daemon.id()
    }

    /// Plants a service whose Exec is `exec`; returns the service file path.
    pub fn plant(&self, name: &str, exec: &str) -> PathBuf {
        self.write_service(name, &format!("Exec={exec}\n"))
    }

    fn write_service(&self, name: &str, keys: &str) -> PathBuf {
        let path = self.service_dir.join(format!("{name}.service"));
        std::fs::write(&path, format!("[D-BUS Service]\nName={name}\n{keys}"))
            .expect("service file");
        path
    }

    /// A shell script in the bus's temp dir that stays alive.
    pub fn script(&self, file: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        write_exec(&path, &format!("#!/bin/sh\n{body}\n"));
        path
    }

    /// Asks the bus to start `name` without waiting: the service never claims
    /// the name, so the call would only time out.
    pub fn activate(&mut self, name: &str) {
        let client = Command::new("dbus-send")
            .arg(format!("--bus={}", self.address))
            .args(["--print-reply", "--reply-timeout=30000"])
            .arg(format!("--dest={name}"))
            .args(["/", "org.freedesktop.DBus.Peer.Ping"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-send");
        self.clients.push(client);
    }
}

/// A directory under /usr/lib for one test (the one host path the tests may
/// touch, to stand for a packaged helper), removed on drop, panics included.
pub struct UsrLibDir(pub PathBuf);

impl UsrLibDir {
    /// A fresh, uniquely named directory holding a copy of `sleep` as
    /// `helper`: a program under a library path that stays alive.
    pub fn with_helper() -> (UsrLibDir, PathBuf) {
        let dir = UsrLibDir(PathBuf::from(format!(
            "/usr/lib/osquery-dbus-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        )));
        std::fs::create_dir_all(&dir.0).expect("mkdir under /usr/lib (tests run as root)");
        let helper = dir.0.join("helper");
        std::fs::copy("/usr/bin/sleep", &helper).expect("copy sleep");
        (dir, helper)
    }
}

impl Drop for UsrLibDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a process that left the bus's tree (so `Bus`'s teardown cannot
/// find it) when dropped.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill(self.0);
    }
}

/// The configuration of a private test bus listening at `<dir>/bus.sock`
/// and activating from `services`, with `extra` elements: its policy lets
/// anyone own and send to anything (clients of a stricter test bus hang).
pub fn private_config(dir: &str, services: &str, extra: &str) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={dir}/bus.sock</listen>
  <servicedir>{services}</servicedir>
  {extra}
  <auth>EXTERNAL</auth>
  <limit name="service_start_timeout">60000</limit>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <allow user="*"/>
  </policy>
</busconfig>
"#
    )
}
