//! Fixture `/proc` trees built in code, for tests that run the process
//! tables with `--proc`: per process the files those tables read (stat,
//! comm, cmdline, status, environ, exe and cwd links, task children, and
//! optionally cgroup).
use osquery_dbus::sources::proc::clock_ticks;
use std::path::Path;

pub struct P<'a> {
    pub pid: u32,
    pub ppid: u32,
    pub comm: &'a [u8],
    pub args: &'a [&'a str],
    pub exe: &'a str,
    pub uid: u32,
    /// Seconds after boot.
    pub start: u64,
    pub environ: &'a str,
}

pub fn write(path: &Path, body: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, body).expect("write");
}

/// Writes one process, a session leader; `children` is what its
/// `task/<pid>/children` lists (`None`: a kernel without those files).
pub fn process(proc: &Path, p: &P, children: Option<&[u32]>) {
    process_in_session(proc, p, children, p.pid)
}

/// [`process`] in the session `session`.
pub fn process_in_session(proc: &Path, p: &P, children: Option<&[u32]>, session: u32) {
    let dir = proc.join(p.pid.to_string());
    let mut stat = format!("{} (", p.pid).into_bytes();
    stat.extend_from_slice(p.comm);
    stat.extend_from_slice(
        format!(
            ") S {} {} {} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {} 1000 100 18446744073709551615\n",
            p.ppid,
            p.pid,
            session,
            p.start * clock_ticks()
        )
        .as_bytes(),
    );
    write(&dir.join("stat"), &stat);
    let mut comm = p.comm.to_vec();
    comm.push(b'\n');
    write(&dir.join("comm"), &comm);
    let mut cmdline = Vec::new();
    for a in p.args {
        cmdline.extend_from_slice(a.as_bytes());
        cmdline.push(0);
    }
    write(&dir.join("cmdline"), &cmdline);
    write(
        &dir.join("status"),
        format!(
            "Name:\tx\nUid:\t{u}\t{u}\t{u}\t{u}\nGid:\t{u}\t{u}\t{u}\t{u}\n",
            u = p.uid
        )
        .as_bytes(),
    );
    write(
        &dir.join("environ"),
        p.environ.replace(' ', "\0").as_bytes(),
    );
    std::os::unix::fs::symlink(p.exe, dir.join("exe")).expect("exe link");
    std::os::unix::fs::symlink("/", dir.join("cwd")).expect("cwd link");
    match children {
        Some(kids) => {
            let text: Vec<String> = kids.iter().map(u32::to_string).collect();
            let mut body = text.join(" ");
            if !body.is_empty() {
                body.push(' ');
            }
            write(
                &dir.join("task").join(p.pid.to_string()).join("children"),
                body.as_bytes(),
            );
        }
        None => std::fs::create_dir_all(dir.join("task").join(p.pid.to_string())).expect("task"),
    }
}

/// Writes `/proc/<pid>/cgroup`.
pub fn cgroup(proc: &Path, pid: u32, text: &str) {
    write(&proc.join(pid.to_string()).join("cgroup"), text.as_bytes());
}
