//! Driving a running extension from Rust: the fake core's `hold` scenario
//! keeps a core and the extension up, and [`Client`] speaks osquery's
//! Thrift calls (`ping`, `call`, `shutdown`) to the extension's socket with
//! the `thrift` crate, fast enough for load tests. Replies are decoded
//! generically, so the test needs none of the crate's private bindings.
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol, TMapIdentifier,
    TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier, TType,
};
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};

/// A core and an extension kept up by `fake_core.py hold`.
pub struct Hold {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    _work: tempfile::TempDir,
}

impl Hold {
    /// Starts the core and the extension (serving `root`) and returns with
    /// the `serving` event.
    pub fn start(root: &Path) -> (Hold, Value) {
        Hold::start_with(root, &[])
    }

    /// [`Hold::start`] with more arguments for the fake core (`--interval N`).
    pub fn start_with(root: &Path, args: &[&str]) -> (Hold, Value) {
        let work = tempfile::tempdir().unwrap();
        let mut child = Command::new(super::peer_python())
            .arg(super::peer_script("fake_core.py"))
            .arg("hold")
            .arg("--bin")
            .arg(env!("CARGO_BIN_EXE_osquery-dbus"))
            .arg("--workdir")
            .arg(work.path())
            .arg("--root")
            .arg(root)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fake core");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut hold = Hold {
            child,
            stdin,
            stdout,
            _work: work,
        };
        let ev = hold.event();
        assert_eq!(ev["event"], "serving", "{ev}");
        (hold, ev)
    }

    /// The next event line.
    pub fn event(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read fake core");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fake core printed {line:?} ({e}); see its stderr"))
    }

    /// Sends a command and returns the event it produces.
    pub fn command(&mut self, cmd: &str) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{cmd}").expect("write fake core");
        stdin.flush().expect("flush");
        self.event()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A decoded Thrift value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Int(i64),
    Bool(bool),
    Str(Vec<u8>),
    Struct(BTreeMap<i16, V>),
    List(Vec<V>),
    Map(Vec<(V, V)>),
    Double(f64),
}

impl V {
    pub fn field(&self, id: i16) -> Option<&V> {
        match self {
            V::Struct(m) => m.get(&id),
            _ => None,
        }
    }
    pub fn int(&self) -> Option<i64> {
        match self {
            V::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn text(&self) -> String {
        match self {
            V::Str(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        }
    }
}

fn read_value(p: &mut dyn TInputProtocol, t: TType) -> thrift::Result<V> {
    Ok(match t {
        TType::Bool => V::Bool(p.read_bool()?),
        TType::I08 => V::Int(p.read_i8()?.into()),
        TType::I16 => V::Int(p.read_i16()?.into()),
        TType::I32 => V::Int(p.read_i32()?.into()),
        TType::I64 => V::Int(p.read_i64()?),
        TType::Double => V::Double(p.read_double()?),
        TType::String | TType::Utf7 | TType::Utf8 | TType::Utf16 => V::Str(p.read_bytes()?),
        TType::Struct => {
            p.read_struct_begin()?;
            let mut m = BTreeMap::new();
            loop {
                let f = p.read_field_begin()?;
                if f.field_type == TType::Stop {
                    break;
                }
                let v = read_value(p, f.field_type)?;
                m.insert(f.id.unwrap_or(0), v);
                p.read_field_end()?;
            }
            p.read_struct_end()?;
            V::Struct(m)
        }
        TType::List | TType::Set => {
            let (elem, size) = if t == TType::List {
                let l = p.read_list_begin()?;
                (l.element_type, l.size)
            } else {
                let s = p.read_set_begin()?;
                (s.element_type, s.size)
            };
            let mut out = Vec::new();
            for _ in 0..size {
                out.push(read_value(p, elem)?);
            }
            if t == TType::List {
                p.read_list_end()?;
            } else {
                p.read_set_end()?;
            }
            V::List(out)
        }
        TType::Map => {
            let m = p.read_map_begin()?;
            let mut out = Vec::new();
            for _ in 0..m.size {
                let k = read_value(p, m.key_type.unwrap_or(TType::String))?;
                let v = read_value(p, m.value_type.unwrap_or(TType::String))?;
                out.push((k, v));
            }
            p.read_map_end()?;
            V::Map(out)
        }
        other => {
            return Err(thrift::Error::Application(thrift::ApplicationError::new(
                thrift::ApplicationErrorKind::ProtocolError,
                format!("unexpected type {other:?}"),
            )))
        }
    })
}

/// One connection to the extension, reused for many calls (as each
/// osquery client thread does).
pub struct Client {
    input: TBinaryInputProtocol<TBufferedReadTransport<UnixStream>>,
    output: TBinaryOutputProtocol<TBufferedWriteTransport<UnixStream>>,
    seq: i32,
}

/// What a `call` answered: the status code and message, and the rows.
#[derive(Debug)]
pub struct Reply {
    pub code: i64,
    pub message: String,
    pub rows: Vec<BTreeMap<String, String>>,
}

impl Client {
    pub fn connect(path: &Path, timeout: Duration) -> std::io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let read = stream.try_clone()?;
        Ok(Client {
            input: TBinaryInputProtocol::new(TBufferedReadTransport::new(read), true),
            output: TBinaryOutputProtocol::new(TBufferedWriteTransport::new(stream), true),
            seq: 0,
        })
    }

    fn begin(&mut self, name: &str) -> thrift::Result<()> {
        self.seq += 1;
        self.output.write_message_begin(&TMessageIdentifier::new(
            name,
            TMessageType::Call,
            self.seq,
        ))?;
        self.output
            .write_struct_begin(&TStructIdentifier::new(format!("{name}_args")))
    }

    fn finish(&mut self) -> thrift::Result<V> {
        self.output.write_field_stop()?;
        self.output.write_struct_end()?;
        self.output.write_message_end()?;
        self.output.flush()?;
        let m = self.input.read_message_begin()?;
        let v = read_value(&mut self.input, TType::Struct)?;
        self.input.read_message_end()?;
        if m.message_type == TMessageType::Exception {
            return Err(thrift::Error::Application(thrift::ApplicationError::new(
                thrift::ApplicationErrorKind::Unknown,
                format!("exception reply: {v:?}"),
            )));
        }
        Ok(v)
    }

    /// `ping()`: the status code.
    pub fn ping(&mut self) -> thrift::Result<i64> {
        self.begin("ping")?;
        let v = self.finish()?;
        Ok(v.field(0)
            .and_then(|s| s.field(1))
            .and_then(V::int)
            .unwrap_or(0))
    }

    /// `shutdown()`.
    pub fn shutdown(&mut self) -> thrift::Result<()> {
        self.begin("shutdown")?;
        self.finish().map(|_| ())
    }

    /// `call(registry, item, request)`.
    pub fn call(
        &mut self,
        registry: &str,
        item: &str,
        request: &[(&str, &str)],
    ) -> thrift::Result<Reply> {
        self.begin("call")?;
        let o = &mut self.output;
        o.write_field_begin(&TFieldIdentifier::new("registry", TType::String, 1))?;
        o.write_string(registry)?;
        o.write_field_end()?;
        o.write_field_begin(&TFieldIdentifier::new("item", TType::String, 2))?;
        o.write_string(item)?;
        o.write_field_end()?;
        o.write_field_begin(&TFieldIdentifier::new("request", TType::Map, 3))?;
        o.write_map_begin(&TMapIdentifier::new(
            TType::String,
            TType::String,
            i32::try_from(request.len()).unwrap(),
        ))?;
        for (k, v) in request {
            o.write_string(k)?;
            o.write_string(v)?;
        }
        o.write_map_end()?;
        o.write_field_end()?;
        let v = self.finish()?;
        let resp = v.field(0).cloned().unwrap_or(V::Struct(BTreeMap::new()));
        let status = resp.field(1);
        let code = status
            .and_then(|s| s.field(1))
            .and_then(V::int)
            .unwrap_or(0);
        let message = status
            .and_then(|s| s.field(2))
            .map(V::text)
            .unwrap_or_default();
        let rows = match resp.field(2) {
            Some(V::List(rows)) => rows
                .iter()
                .map(|r| match r {
                    V::Map(kv) => kv.iter().map(|(k, v)| (k.text(), v.text())).collect(),
                    _ => BTreeMap::new(),
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Reply {
            code,
            message,
            rows,
        })
    }

    /// A `generate` of `dbus_service_files` with the given context JSON.
    pub fn generate(&mut self, context: &str) -> thrift::Result<Reply> {
        self.call(
            "table",
            "dbus_service_files",
            &[("action", "generate"), ("context", context)],
        )
    }
}

/// `VmRSS` of a process, in KiB.
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

/// Threads of a process.
pub fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .count()
}
