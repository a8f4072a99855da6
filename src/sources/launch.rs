//! What an argv really runs once wrappers are looked through: `env` with
//! its assignments, then an interpreter with the script file or the inline
//! code it is given.
//!
//! A service whose `Exec=` is `/usr/bin/env LD_PRELOAD=/tmp/x.so
//! /usr/bin/packaged` or `/usr/bin/python3 /tmp/agent.py` runs a packaged,
//! verified program, and every check of that program passes; what decides
//! what happens is the environment or the script. The argv is read here the
//! way `env` (coreutils) and each interpreter read their own command line,
//! for the options that change what runs; no file is touched.

/// Environment variables that change which code a program loads or runs.
pub const CODE_VARIABLES: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "PATH",
    "BASH_ENV",
    "ENV",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PERL5LIB",
    "PERL5OPT",
    "RUBYLIB",
    "RUBYOPT",
    "NODE_OPTIONS",
    "NODE_PATH",
];

/// What an argv runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    /// `NAME=VALUE` assignments an `env` wrapper makes (and `-u NAME` /
    /// `-i` as written), in order; empty without one.
    pub env: Vec<String>,
    /// Whether an `env` wrapper was looked through.
    pub via_env: bool,
    /// The program that runs after `env`: the argv's first word otherwise.
    pub program: String,
    /// The interpreter's script file, as written.
    pub script: Option<String>,
    /// Code given on the command line (`sh -c`, `python -c`, `perl -e`,
    /// `node -e`, …).
    pub inline: bool,
}

impl Launch {
    /// The assignments that set a variable of [`CODE_VARIABLES`].
    pub fn code_variables(&self) -> Vec<&str> {
        self.env
            .iter()
            .filter(|a| {
                a.split_once('=')
                    .is_some_and(|(name, _)| CODE_VARIABLES.contains(&name))
            })
            .map(String::as_str)
            .collect()
    }
}

/// How one interpreter reads its options: which take a value (the next
/// word, or the rest of the same word), which give inline code, and which
/// name a script file.
struct Grammar {
    takes_value: &'static [&'static str],
    inline: &'static [&'static str],
    /// An option whose value is the script file (`php -f`).
    script_option: &'static [&'static str],
    /// An option after which no script file follows (`python -m`).
    no_script: &'static [&'static str],
}

const SHELL: Grammar = Grammar {
    takes_value: &["-o", "+o", "-O", "+O", "--rcfile", "--init-file"],
    inline: &["-c"],
    script_option: &[],
    no_script: &[],
};
const PYTHON: Grammar = Grammar {
    takes_value: &["-W", "-X", "--check-hash-based-pycs"],
    inline: &["-c"],
    script_option: &[],
    no_script: &["-m"],
};
const PERL: Grammar = Grammar {
    takes_value: &["-I", "-M", "-m", "-x"],
    inline: &["-e", "-E"],
    script_option: &[],
    no_script: &[],
};
const RUBY: Grammar = Grammar {
    takes_value: &["-I", "-r", "-C", "-E", "--encoding"],
    inline: &["-e"],
    script_option: &[],
    no_script: &[],
};
const NODE: Grammar = Grammar {
    takes_value: &[
        "-r",
        "--require",
        "--import",
        "--loader",
        "-C",
        "--conditions",
    ],
    inline: &["-e", "--eval", "-p", "--print"],
    script_option: &[],
    no_script: &[],
};
const PHP: Grammar = Grammar {
    takes_value: &["-c", "-d", "-z"],
    inline: &["-r", "-R", "-B", "-E"],
    script_option: &["-f"],
    no_script: &[],
};
const LUA: Grammar = Grammar {
    takes_value: &["-l"],
    inline: &["-e"],
    script_option: &[],
    no_script: &[],
};

/// The grammar of the interpreter `program` names, by its file name.
fn grammar(program: &str) -> Option<&'static Grammar> {
    let name = program.rsplit('/').next().unwrap_or(program);
    let versioned = |base: &str| {
        name.strip_prefix(base)
            .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    };
    match name {
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "rbash" => Some(&SHELL),
        "node" | "nodejs" => Some(&NODE),
        _ if versioned("python") => Some(&PYTHON),
        _ if versioned("perl") => Some(&PERL),
        _ if versioned("ruby") => Some(&RUBY),
        _ if versioned("php") => Some(&PHP),
        _ if versioned("lua") || name == "luajit" => Some(&LUA),
        _ => None,
    }
}

/// Looks through an `env` wrapper (coreutils' options: `-i`, `-0`, `-u
/// NAME`, `-C DIR`, `-S STRING`, `--`, then `NAME=VALUE` words) and an
/// interpreter's options; `argv` as the bus or systemd would exec it.
pub fn analyse(argv: &[String]) -> Launch {
    let mut out = Launch::default();
    let mut words: Vec<String> = argv.to_vec();
    if words.first().is_some_and(|p| is_named(p, "env")) {
        out.via_env = true;
        words = unwrap_env(&words[1..], &mut out.env);
    }
    // busybox runs the applet its first argument names.
    if words.first().is_some_and(|p| is_named(p, "busybox")) && words.len() > 1 {
        words.remove(0);
    }
    let Some(program) = words.first() else {
        return out;
    };
    out.program = program.clone();
    let Some(g) = grammar(program) else {
        return out;
    };
    let mut i = 1;
    while i < words.len() {
        let w = words[i].as_str();
        if w == "--" || w == "-" {
            // `--` ends the options; `-` reads the script from stdin.
            if w == "--" {
                out.script = words.get(i + 1).cloned();
            }
            return out;
        }
        let shell = std::ptr::eq(g, &SHELL);
        if !(w.starts_with('-') || (shell && w.starts_with('+'))) {
            out.script = Some(w.to_string());
            return out;
        }
        if g.inline.iter().any(|o| option_is(w, o)) {
            out.inline = true;
            return out;
        }
        // A shell's bundled flags (`-ec`) include `-c` too.
        if shell && w.starts_with('-') && !w.starts_with("--") && w.contains('c') {
            out.inline = true;
            return out;
        }
        if g.no_script.iter().any(|o| option_is(w, o)) {
            return out;
        }
        if let Some(o) = g.script_option.iter().find(|o| option_is(w, o)) {
            out.script = if w.len() > o.len() {
                Some(w[o.len()..].to_string())
            } else {
                words.get(i + 1).cloned()
            };
            return out;
        }
        // An option taking a value skips the next word unless the value is
        // attached (`-Wignore`, `--rcfile=x`).
        if g.takes_value.contains(&w) {
            i += 2;
            continue;
        }
        i += 1;
    }
    out
}

/// Whether `word` is `opt`, or `opt` with its value attached.
fn option_is(word: &str, opt: &str) -> bool {
    word == opt
        || (word.starts_with(opt) && (!opt.starts_with("--") || word[opt.len()..].starts_with('=')))
}

fn is_named(program: &str, name: &str) -> bool {
    program.rsplit('/').next() == Some(name)
}

/// The command `env` runs, collecting what it changes in `env`.
fn unwrap_env(args: &[String], env: &mut Vec<String>) -> Vec<String> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-i" | "--ignore-environment" | "-" => env.push("-i".into()),
            "-0" | "--null" | "-v" | "--debug" => {}
            "-u" | "--unset" | "-C" | "--chdir" => {
                if a == "-u" || a == "--unset" {
                    if let Some(n) = args.get(i + 1) {
                        env.push(format!("-u {n}"));
                    }
                }
                i += 1;
            }
            "-S" | "--split-string" => {
                // The string is split into words that take the place of
                // the option, as `env -S` does (quotes are not handled).
                let mut rest: Vec<String> = args
                    .get(i + 1)
                    .map(|s| s.split_whitespace().map(String::from).collect())
                    .unwrap_or_default();
                rest.extend_from_slice(args.get(i + 2..).unwrap_or_default());
                return unwrap_env(&rest, env);
            }
            "--" => return args[i + 1..].to_vec(),
            _ if a.starts_with("--unset=") => env.push(format!("-u {}", &a[8..])),
            _ if a.starts_with("-u") && a.len() > 2 => env.push(format!("-u {}", &a[2..])),
            _ if a.starts_with("--chdir=") || (a.starts_with("-C") && a.len() > 2) => {}
            _ if a.starts_with("-S") && a.len() > 2 => {
                let mut rest: Vec<String> = a[2..].split_whitespace().map(String::from).collect();
                rest.extend_from_slice(&args[i + 1..]);
                return unwrap_env(&rest, env);
            }
            _ if a.contains('=') && !a.starts_with('=') => env.push(a.to_string()),
            _ => return args[i..].to_vec(),
        }
        i += 1;
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(line: &str) -> Launch {
        analyse(&line.split(' ').map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn env_wrappers_are_looked_through() {
        let l = launch("/usr/bin/env LD_PRELOAD=/tmp/x.so FOO=1 /usr/libexec/d --serve");
        assert!(l.via_env);
        assert_eq!(l.program, "/usr/libexec/d");
        assert_eq!(l.env, ["LD_PRELOAD=/tmp/x.so", "FOO=1"]);
        assert_eq!(l.code_variables(), ["LD_PRELOAD=/tmp/x.so"]);
        let l = launch("/usr/bin/env -i -u HOME PATH=/tmp:/usr/bin daemon");
        assert_eq!(l.program, "daemon");
        assert_eq!(l.env, ["-i", "-u HOME", "PATH=/tmp:/usr/bin"]);
        let l = launch("env -S LD_AUDIT=/x.so\t/usr/bin/true");
        assert_eq!(l.env, ["LD_AUDIT=/x.so"]);
        assert_eq!(l.program, "/usr/bin/true");
        let l = launch("/usr/bin/daemon --env=x");
        assert!(!l.via_env);
        assert!(l.env.is_empty());
        assert_eq!(l.program, "/usr/bin/daemon");
    }

    #[test]
    fn scripts_and_inline_code() {
        let s = |line: &str| launch(line).script;
        assert_eq!(s("/bin/sh /tmp/a.sh x").as_deref(), Some("/tmp/a.sh"));
        assert_eq!(
            s("/bin/bash -e -o pipefail /opt/a.sh").as_deref(),
            Some("/opt/a.sh")
        );
        assert_eq!(
            s("/usr/bin/python3 -u -W ignore /srv/agent.py").as_deref(),
            Some("/srv/agent.py")
        );
        assert_eq!(s("/usr/bin/python3.11 -m http.server"), None);
        assert_eq!(
            s("/usr/bin/perl -I /x /usr/lib/y.pl").as_deref(),
            Some("/usr/lib/y.pl")
        );
        assert_eq!(
            s("/usr/bin/node -r ./hook.js /srv/app.js").as_deref(),
            Some("/srv/app.js")
        );
        assert_eq!(
            s("/usr/bin/php -f /var/www/x.php").as_deref(),
            Some("/var/www/x.php")
        );
        assert_eq!(s("/bin/busybox sh /tmp/b.sh").as_deref(), Some("/tmp/b.sh"));
        assert_eq!(
            s("/usr/bin/env PYTHONPATH=/tmp python3 /usr/lib/a.py").as_deref(),
            Some("/usr/lib/a.py")
        );
        assert_eq!(s("/usr/bin/daemon /tmp/x"), None, "not an interpreter");
        let inline = |line: &str| launch(line).inline;
        assert!(inline("/bin/sh -c id"));
        assert!(inline("/bin/bash -ec id"));
        assert!(inline("/usr/bin/python3 -c print(1)"));
        assert!(inline("/usr/bin/perl -e exec"));
        assert!(inline("/usr/bin/node --eval=x"));
        assert!(inline("/usr/bin/php -r system('id');"));
        assert!(!inline("/usr/bin/ruby -r socket /srv/a.rb"));
        assert!(
            !inline("/bin/sh /usr/lib/a.sh -c"),
            "after the script, its own arguments"
        );
    }
}
