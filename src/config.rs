//! The config file: defaults for the command line, read before it is parsed.
//!
//! The file is YAML, taken from `--config FILE` (or `DFPULL_CONFIG`), else
//! `$XDG_CONFIG_HOME/dfpull/config.yaml` (`~/.config/dfpull/config.yaml` when that variable is
//! unset), else `/etc/dfpull/config.yaml`; the first one found is the only one read, and none at
//! all is fine. Top-level keys set global options; a section named after a subcommand sets that
//! subcommand's options (and may set global ones for it alone). A key is the long flag's name
//! with `_` for `-`: every option whose `--help` line shows an `[env: DFPULL_...]` variable can
//! be set, and nothing else can. Lists are written as YAML lists.
//!
//! ```yaml
//! # /etc/dfpull/config.yaml
//! json: false
//! peer:
//!   out: /var/lib/dfpull/images
//!   load: containerd
//!   namespace: k8s.io          # the images Kubernetes sees
//!   seed_time: 2m
//!   discover_timeout: 30s
//! seed:
//!   listen: 0.0.0.0:7342
//!   cache_dir: /var/cache/dfpull
//!   block_size: 4MiB
//! status:
//!   coordinator: http://10.0.0.1:7341
//! ```
//!
//! Precedence is flag > `DFPULL_*` variable > file > built-in default. The file is applied by
//! turning each key that concerns the command being run into its `DFPULL_*` variable, unless that
//! variable is already set; clap then reads the variables as usual. So the precedence is clap's
//! own, and the keys come from the clap definition ([`crate::cli::Cli`]): the file cannot offer
//! an option the command line lacks, or miss one it has. [`load`] only works out the variables;
//! `main` sets them while the process is still single-threaded.
//!
//! The whole file is checked on every run, whatever the subcommand: an unknown key (named with
//! its file and line), a value its option would refuse, or malformed YAML is a usage error
//! (exit code 2). `completions`, `man` and `help` do not read the file, so a broken one never
//! stands between a user and the help. `--config /dev/null` runs without any file.
//!
//! YAML crate: serde-saphyr, not serde_yaml (deprecated, unmaintained) nor serde_yml (unsound,
//! RUSTSEC-2025-0068). It and its parser (granit-parser) are `#![forbid(unsafe_code)]`, fuzzed
//! and panic-free, with budgets against alias bombs: this file is parsed by a tool that usually
//! runs as root. It also reports the line of
//! every key ([`Spanned`]), which is how an unknown key is shown where it is. serde_norway, the
//! drop-in alternative, parses with `unsafe-libyaml-norway`, libyaml translated to unsafe Rust,
//! and gives no positions for keys. serde-saphyr is pinned to 1.1, its last release that builds
//! with this crate's minimum Rust (1.85).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command, CommandFactory as _};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter as _, Spanned, UserMessageFormatter};

use crate::cli::Cli;
use crate::exit::{Exit, HasExit};

/// The file used when neither `--config` nor a per-user file is there.
pub const SYSTEM_CONFIG: &str = "/etc/dfpull/config.yaml";

/// The variable that names the file, like `--config`.
pub const CONFIG_ENV: &str = "DFPULL_CONFIG";

/// Subcommands that never read the file: they have no options to set, and must work with a
/// broken one.
const WITHOUT_CONFIG: &[&str] = &["completions", "man", "help"];

/// What a config file asks for in this run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// The file that was read, if any.
    pub path: Option<PathBuf>,
    /// `DFPULL_*` variables to set, with their values, for the keys whose variable was not set.
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}{}: {message}", path.display(), At(*line, *column))]
    Syntax {
        path: PathBuf,
        line: Option<u64>,
        column: Option<u64>,
        message: String,
    },
    #[error("config file {}{}: unknown key `{key}`{hint}", path.display(), At(Some(*line), None))]
    UnknownKey {
        path: PathBuf,
        line: u64,
        key: String,
        /// What the key might have been meant as, and the keys known there.
        hint: String,
    },
    #[error("config file {}{}: `{key}`: {message}", path.display(), At(Some(*line), None))]
    BadValue {
        path: PathBuf,
        line: u64,
        /// `section.key`, or `key` at the top level.
        key: String,
        message: String,
    },
}

impl HasExit for ConfigError {
    fn exit(&self) -> Exit {
        Exit::Usage
    }
}

/// `, line L` or `, line L, column C`, or nothing.
struct At(Option<u64>, Option<u64>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(l), Some(c)) => write!(f, ", line {l}, column {c}"),
            (Some(l), None) => write!(f, ", line {l}"),
            _ => Ok(()),
        }
    }
}

/// Finds and checks the config file for the command line `args` (program name first) and works
/// out the variables it sets. `env` reads the environment (`std::env::var_os` in `main`).
pub fn load(
    args: &[OsString],
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Settings, ConfigError> {
    let line = scan(args);
    if line
        .subcommand
        .as_deref()
        .is_none_or(|s| WITHOUT_CONFIG.contains(&s))
    {
        return Ok(Settings::default());
    }
    let explicit = line.config.or_else(|| env(CONFIG_ENV)).map(PathBuf::from);
    let Some(path) = locate(explicit, &env, Path::new(SYSTEM_CONFIG)) else {
        return Ok(Settings::default());
    };
    let bytes = std::fs::read(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::Syntax {
        path: path.clone(),
        line: None,
        column: None,
        message: "not UTF-8 text".into(),
    })?;
    let vars = settle(&text, &path, line.subcommand.as_deref(), &env)?;
    Ok(Settings {
        path: Some(path),
        vars,
    })
}

/// The parts of a raw command line the config needs before clap sees it.
#[derive(Debug, Default, PartialEq)]
struct RawLine {
    config: Option<OsString>,
    subcommand: Option<String>,
}

/// Finds `--config FILE` (anywhere: it is a global option) and the subcommand: the first word
/// that is not an option, since the options before a subcommand (`-v`, `-q`, `--json`,
/// `--config FILE`) take no value but `--config`'s.
fn scan(args: &[OsString]) -> RawLine {
    let mut line = RawLine::default();
    let mut words = args.iter().skip(1);
    while let Some(word) = words.next() {
        let Some(s) = word.to_str() else {
            continue;
        };
        if s == "--" {
            break;
        } else if s == "--config" {
            let value = words.next().cloned();
            line.config = line.config.or(value);
        } else if let Some(path) = s.strip_prefix("--config=") {
            line.config = line.config.or_else(|| Some(path.into()));
        } else if !s.starts_with('-') && line.subcommand.is_none() {
            line.subcommand = Some(s.to_string());
        }
    }
    line
}

/// The file to read: the one asked for (which must then exist), else the first of the user's
/// and the system's that exists.
fn locate(
    explicit: Option<PathBuf>,
    env: &impl Fn(&str) -> Option<OsString>,
    system: &Path,
) -> Option<PathBuf> {
    if explicit.is_some() {
        return explicit;
    }
    // XDG: an unset, empty or relative XDG_CONFIG_HOME means ~/.config.
    let config_home = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            env("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".config"))
        });
    let user = config_home.map(|d| d.join("dfpull").join("config.yaml"));
    user.into_iter()
        .chain([system.to_path_buf()])
        .find(|p| p.exists())
}

/// One settable option: its key in the file, its variable, and how clap parses it.
struct Key {
    name: String,
    env: String,
    /// Set for options that take a list (`value_delimiter`): the list is joined with it.
    delimiter: Option<char>,
    /// `--flag` (or the positional's name) for messages.
    flag: String,
    parser: clap::builder::ValueParser,
    possible: Vec<String>,
}

impl Key {
    fn of(arg: &Arg) -> Option<Key> {
        let env = arg.get_env()?.to_str()?.to_string();
        if env == CONFIG_ENV {
            return None;
        }
        let name = key_name(arg);
        let flag = flag_name(arg);
        let possible = arg
            .get_value_parser()
            .possible_values()
            .map(|values| {
                values
                    .filter(|v| !v.is_hide_set())
                    .map(|v| v.get_name().to_string())
                    .collect()
            })
            .unwrap_or_default();
        Some(Key {
            name,
            env,
            delimiter: arg.get_value_delimiter(),
            flag,
            parser: arg.get_value_parser().clone(),
            possible,
        })
    }

    /// Checks one value with the option's own parser, as clap will when it reads the variable.
    fn check(&self, value: &str) -> Result<(), String> {
        if let Some(d) = self.delimiter.filter(|d| value.contains(*d)) {
            return Err(format!(
                "{value:?} contains `{d}`, which separates the values of {} (give a YAML list)",
                self.flag
            ));
        }
        let probe = Command::new("dfpull").no_binary_name(true).arg(
            Arg::new("value")
                .long("value")
                .action(ArgAction::Set)
                .value_parser(self.parser.clone()),
        );
        match probe.try_get_matches_from([format!("--value={value}")]) {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut message = format!("invalid value {value:?} for {}", self.flag);
                // clap's own reason: the parser's error, else the values it accepts.
                if let Some(cause) = std::error::Error::source(&e) {
                    message.push_str(&format!(": {cause}"));
                } else if !self.possible.is_empty() {
                    message.push_str(&format!(" (one of: {})", self.possible.join(", ")));
                }
                Err(message)
            }
        }
    }
}

/// An option's key: its long name with `_` for `-` (a positional's: its name).
fn key_name(arg: &Arg) -> String {
    arg.get_long()
        .unwrap_or(arg.get_id().as_str())
        .replace('-', "_")
}

/// An option as messages show it: `--long`, or `<NAME>` for a positional.
fn flag_name(arg: &Arg) -> String {
    match arg.get_long() {
        Some(long) => format!("--{long}"),
        None => format!("<{}>", arg.get_id().as_str().to_uppercase()),
    }
}

/// The keys of the file, from the clap definition.
struct Schema {
    root: Vec<Key>,
    /// Subcommands with at least one key of their own, and their keys (globals included).
    sections: Vec<(String, Vec<Key>)>,
    /// `(subcommand, key, flag)` for the options that have no variable, so can only be given
    /// on the command line (`demo --keep`): named as such when they turn up in the file.
    command_line_only: Vec<(String, String, String)>,
}

impl Schema {
    fn new() -> Schema {
        let mut cmd = Cli::command();
        // Built, so global options are copied into every subcommand and flags have their
        // final value parsers (`true`/`false` for a boolean flag read from a variable).
        cmd.build();
        let root: Vec<Key> = cmd.get_arguments().filter_map(Key::of).collect();
        let sections = cmd
            .get_subcommands()
            .map(|sub| {
                let keys: Vec<Key> = sub.get_arguments().filter_map(Key::of).collect();
                (sub.get_name().to_string(), keys)
            })
            .filter(|(_, keys)| keys.iter().any(|k| !root.iter().any(|r| r.env == k.env)))
            .collect();
        let command_line_only = std::iter::once(&cmd)
            .chain(cmd.get_subcommands())
            .flat_map(|c| {
                let section = if c.get_name() == cmd.get_name() {
                    String::new()
                } else {
                    c.get_name().to_string()
                };
                c.get_arguments()
                    .filter(|a| a.get_env().is_none() && !a.is_hide_set())
                    .map(move |a| (section.clone(), key_name(a), flag_name(a)))
            })
            .collect();
        Schema {
            root,
            sections,
            command_line_only,
        }
    }

    fn section(&self, name: &str) -> Option<&[Key]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k.as_slice())
    }

    /// Why `key` is not known where it was found, and what is.
    fn hint(&self, key: &str, section: Option<&str>) -> String {
        let known: Vec<&str> = match section {
            Some(s) => self
                .section(s)
                .unwrap_or_default()
                .iter()
                .map(|k| k.name.as_str())
                .collect(),
            None => self
                .root
                .iter()
                .map(|k| k.name.as_str())
                .chain(self.sections.iter().map(|(n, _)| n.as_str()))
                .collect(),
        };
        let place = section.map_or(String::new(), |s| format!(" in `{s}`"));
        let underscored = key.replace('-', "_");
        let owners: Vec<&str> = self
            .sections
            .iter()
            .filter(|(_, keys)| keys.iter().any(|k| k.name == underscored))
            .map(|(n, _)| n.as_str())
            .collect();
        let cli_only = self
            .command_line_only
            .iter()
            .find(|(s, k, _)| s == section.unwrap_or_default() && *k == underscored);
        let why = if underscored == "config" {
            "; a config file cannot name another one (use --config or DFPULL_CONFIG)".to_string()
        } else if underscored != key && known.contains(&underscored.as_str()) {
            format!("; keys use `_` for `-`: `{underscored}`")
        } else if let Some((_, _, flag)) = cli_only {
            format!("; {flag} can only be given on the command line")
        } else if section.is_none() && !owners.is_empty() {
            format!(
                "; `{underscored}` is an option of {}: put it in that section",
                owners.join(", ")
            )
        } else {
            String::new()
        };
        format!("{place}{why} (known keys{place}: {})", known.join(", "))
    }
}

/// A YAML value as the file gives it, before it is checked against an option.
#[derive(Debug)]
enum Node {
    Null,
    /// A scalar, as written (numbers keep their spelling: a swarm prefix `0042` stays `0042`).
    Scalar(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

/// What the deserializer reports; plain numbers are turned back into their spelling by
/// [`spelled`] from the source text.
#[derive(Debug)]
enum RawNode {
    Null,
    Str(String),
    Bool(bool),
    Number(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<String>, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawNode, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawNode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
                Ok(RawNode::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
                Ok(RawNode::Number(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawNode, E> {
                Ok(RawNode::Number(v.to_string()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<RawNode, E> {
                Ok(RawNode::Number(v.to_string()))
            }
            fn visit_u128<E>(self, v: u128) -> Result<RawNode, E> {
                Ok(RawNode::Number(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
                Ok(RawNode::Number(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
                Ok(RawNode::Str(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<RawNode, E> {
                Ok(RawNode::Null)
            }
            fn visit_none<E>(self) -> Result<RawNode, E> {
                Ok(RawNode::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawNode::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(RawNode::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// `node` with every number given back its spelling in `text` (`0042`, `1.50`, `0x10`).
fn spelled(node: Spanned<RawNode>, text: &str) -> Spanned<Node> {
    let span = node.defined.span();
    let source = span
        .byte_offset()
        .zip(span.byte_len())
        .and_then(|(at, len)| text.get(at as usize..(at + len) as usize));
    let value = match node.value {
        RawNode::Null => Node::Null,
        RawNode::Str(s) => Node::Scalar(s),
        RawNode::Bool(b) => Node::Scalar(b.to_string()),
        RawNode::Number(n) => Node::Scalar(
            source
                .map(str::trim)
                .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                .map_or(n, str::to_string),
        ),
        RawNode::Seq(items) => Node::Seq(items.into_iter().map(|i| spelled(i, text)).collect()),
        RawNode::Map(entries) => Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k, spelled(v, text)))
                .collect(),
        ),
    };
    Spanned::new(value, node.referenced, node.defined)
}

/// Parses `text`: `None` for a file with no document (empty, or only comments).
fn parse(text: &str, path: &Path) -> Result<Option<Spanned<Node>>, ConfigError> {
    let options = serde_saphyr::options! {
        with_snippet: false,
        // YAML 1.2: `yes`, `no`, `on` and `off` are strings, as every other option value is.
        strict_booleans: true,
    };
    match serde_saphyr::from_str_with_options::<Option<Spanned<RawNode>>>(text, options) {
        Ok(doc) => Ok(doc.map(|d| spelled(d, text))),
        Err(e) => {
            let at = e.location();
            Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line: at.map(|l| l.line()),
                column: at.map(|l| l.column()),
                message: UserMessageFormatter.format_message(&e).into_owned(),
            })
        }
    }
}

/// Checks the whole file and returns the variables it sets for `subcommand`.
fn settle(
    text: &str,
    path: &Path,
    subcommand: Option<&str>,
    env: &impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(doc) = parse(text, path)? else {
        return Ok(Vec::new());
    };
    let schema = Schema::new();
    let entries = match doc.value {
        Node::Map(entries) => entries,
        Node::Null => Vec::new(),
        _ => {
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line: Some(doc.referenced.line()),
                column: Some(doc.referenced.column()),
                message: "expected a mapping of options and subcommand sections".into(),
            });
        }
    };
    let unknown = |key: &Spanned<String>, section: Option<&str>| ConfigError::UnknownKey {
        path: path.to_path_buf(),
        line: key.referenced.line(),
        key: key.value.clone(),
        hint: schema.hint(&key.value, section),
    };
    let mut top = Vec::new();
    let mut own = Vec::new();
    for (key, node) in &entries {
        if let Some(k) = schema.root.iter().find(|k| k.name == key.value) {
            top.push((k.env.clone(), value_of(k, &key.value, node, path)?));
        } else if let Some(keys) = schema.section(&key.value) {
            let body = match &node.value {
                Node::Map(body) => body.as_slice(),
                Node::Null => &[],
                _ => {
                    return Err(ConfigError::BadValue {
                        path: path.to_path_buf(),
                        line: key.referenced.line(),
                        key: key.value.clone(),
                        message: format!("expected a mapping of `dfpull {}` options", key.value),
                    });
                }
            };
            for (name, node) in body {
                let k = keys
                    .iter()
                    .find(|k| k.name == name.value)
                    .ok_or_else(|| unknown(name, Some(&key.value)))?;
                let value = value_of(k, &format!("{}.{}", key.value, name.value), node, path)?;
                if subcommand == Some(key.value.as_str()) {
                    own.push((k.env.clone(), value));
                }
            }
        } else {
            return Err(unknown(key, None));
        }
    }
    // The section's keys first: a global option set in the section beats the top-level one.
    let mut vars: Vec<(String, String)> = Vec::new();
    for (name, value) in own.into_iter().chain(top) {
        if env(&name).is_none() && !vars.iter().any(|(n, _)| *n == name) {
            vars.push((name, value));
        }
    }
    Ok(vars)
}

/// The variable's value for `node` under `k` (`shown` names it in messages), checked with the
/// option's own parser.
fn value_of(
    k: &Key,
    shown: &str,
    node: &Spanned<Node>,
    path: &Path,
) -> Result<String, ConfigError> {
    let bad = |message: String| ConfigError::BadValue {
        path: path.to_path_buf(),
        line: node.referenced.line(),
        key: shown.to_string(),
        message,
    };
    let values: Vec<&str> = match &node.value {
        Node::Scalar(s) => vec![s.as_str()],
        Node::Seq(items) if k.delimiter.is_some() => items
            .iter()
            .map(|i| match &i.value {
                Node::Scalar(s) => Ok(s.as_str()),
                _ => Err(bad(format!("{} takes a list of plain values", k.flag))),
            })
            .collect::<Result<_, _>>()?,
        Node::Seq(_) => return Err(bad(format!("{} takes one value, not a list", k.flag))),
        Node::Map(_) => return Err(bad(format!("{} takes a value, not a mapping", k.flag))),
        Node::Null => return Err(bad("no value (remove the key to use the default)".into())),
    };
    for v in &values {
        k.check(v).map_err(bad)?;
    }
    Ok(values.join(&k.delimiter.unwrap_or(',').to_string()))
}

/// The settable keys, as `section.key` (or `key` at the top level) with their variables: for
/// documentation and tests.
pub fn keys() -> Vec<(String, String)> {
    let schema = Schema::new();
    let mut out: Vec<(String, String)> = schema
        .root
        .iter()
        .map(|k| (k.name.clone(), k.env.clone()))
        .collect();
    for (section, keys) in &schema.sections {
        out.extend(
            keys.iter()
                .map(|k| (format!("{section}.{}", k.name), k.env.clone())),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn args(line: &str) -> Vec<OsString> {
        std::iter::once("dfpull")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn settle_str(text: &str, subcommand: &str) -> Result<Vec<(String, String)>, ConfigError> {
        settle(text, Path::new("c.yaml"), Some(subcommand), &no_env)
    }

    fn var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
        vars.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn scan_finds_the_subcommand_and_the_config_flag() {
        let cases: [(&str, Option<&str>, Option<&str>); 8] = [
            ("peer --out x", None, Some("peer")),
            ("-v --json peer", None, Some("peer")),
            ("--config a.yaml peer", Some("a.yaml"), Some("peer")),
            ("--config=a.yaml seed x.tar", Some("a.yaml"), Some("seed")),
            ("peer --config a.yaml --out b", Some("a.yaml"), Some("peer")),
            ("-q", None, None),
            ("peer -- --config a.yaml", None, Some("peer")),
            ("completions bash", None, Some("completions")),
        ];
        for (line, config, sub) in cases {
            let got = scan(&args(line));
            assert_eq!(got.config.as_deref(), config.map(OsStr::new), "{line}");
            assert_eq!(got.subcommand.as_deref(), sub, "{line}");
        }
    }

    #[test]
    fn locate_prefers_the_flag_then_xdg_then_home_then_the_system_file() {
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().join("xdg");
        let home = dir.path().join("home");
        let system = dir.path().join("etc.yaml");
        let user_xdg = xdg.join("dfpull/config.yaml");
        let user_home = home.join(".config/dfpull/config.yaml");
        let env = |name: &str| match name {
            "XDG_CONFIG_HOME" => Some(xdg.clone().into_os_string()),
            "HOME" => Some(home.clone().into_os_string()),
            _ => None,
        };
        let home_only = |name: &str| (name == "HOME").then(|| home.clone().into_os_string());
        let relative_xdg = |name: &str| match name {
            "XDG_CONFIG_HOME" => Some(OsString::from("relative")),
            _ => home_only(name),
        };

        assert_eq!(locate(None, &env, &system), None, "no file at all is fine");
        std::fs::write(&system, "").unwrap();
        assert_eq!(locate(None, &env, &system), Some(system.clone()));
        for p in [&user_xdg, &user_home] {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        assert_eq!(locate(None, &env, &system), Some(user_xdg.clone()));
        assert_eq!(locate(None, &home_only, &system), Some(user_home.clone()));
        assert_eq!(locate(None, &relative_xdg, &system), Some(user_home));
        let named = dir.path().join("missing.yaml");
        assert_eq!(
            locate(Some(named.clone()), &env, &system),
            Some(named),
            "a named file is used even when it is missing, so reading it fails"
        );
    }

    #[test]
    fn the_running_subcommand_gets_its_section_and_the_top_level() {
        let text = "json: true\n\
                    peer:\n  out: /var/lib/images\n  seed_time: 2m\n  load: containerd\n\
                    seed:\n  listen: 0.0.0.0:7000\n  no_mdns: true\n";
        let peer = settle_str(text, "peer").unwrap();
        assert_eq!(var(&peer, "DFPULL_OUT"), Some("/var/lib/images"));
        assert_eq!(var(&peer, "DFPULL_SEED_TIME"), Some("2m"));
        assert_eq!(var(&peer, "DFPULL_LOAD"), Some("containerd"));
        assert_eq!(var(&peer, "DFPULL_JSON"), Some("true"));
        assert_eq!(
            var(&peer, "DFPULL_LISTEN"),
            None,
            "seed's listen is not peer's"
        );
        assert_eq!(var(&peer, "DFPULL_NO_MDNS"), None);

        let seed = settle_str(text, "seed").unwrap();
        assert_eq!(var(&seed, "DFPULL_LISTEN"), Some("0.0.0.0:7000"));
        assert_eq!(var(&seed, "DFPULL_NO_MDNS"), Some("true"));
        assert_eq!(var(&seed, "DFPULL_OUT"), None);
    }

    #[test]
    fn a_set_variable_wins_over_the_file_and_a_section_over_the_top_level() {
        let text = "json: true\npeer:\n  json: false\n  out: /from/file\n  seed_time: 2m\n";
        let env = |name: &str| (name == "DFPULL_OUT").then(|| OsString::from("/from/env"));
        let vars = settle(text, Path::new("c.yaml"), Some("peer"), &env).unwrap();
        assert_eq!(var(&vars, "DFPULL_OUT"), None, "the variable is left alone");
        assert_eq!(var(&vars, "DFPULL_SEED_TIME"), Some("2m"));
        assert_eq!(var(&vars, "DFPULL_JSON"), Some("false"));
        assert_eq!(vars.iter().filter(|(n, _)| n == "DFPULL_JSON").count(), 1);
        assert_eq!(
            var(&settle_str(text, "status").unwrap(), "DFPULL_JSON"),
            Some("true")
        );
    }

    #[test]
    fn values_keep_their_spelling_and_lists_are_joined() {
        let text = "peer:\n  swarm: 0042\n  discover_timeout: 90\n\
                    seed:\n  sources: [a.tar, 'b c.tar']\n  block_size: 4MiB\n";
        let peer = settle_str(text, "peer").unwrap();
        assert_eq!(var(&peer, "DFPULL_SWARM"), Some("0042"));
        assert_eq!(var(&peer, "DFPULL_DISCOVER_TIMEOUT"), Some("90"));
        let seed = settle_str(text, "seed").unwrap();
        assert_eq!(var(&seed, "DFPULL_SOURCES"), Some("a.tar,b c.tar"));
        assert_eq!(var(&seed, "DFPULL_BLOCK_SIZE"), Some("4MiB"));
        let one = settle_str("seed:\n  sources: a.tar\n", "seed").unwrap();
        assert_eq!(var(&one, "DFPULL_SOURCES"), Some("a.tar"));
    }

    #[test]
    fn empty_files_set_nothing() {
        for text in ["", "# only a comment\n", "peer:\n", "---\n"] {
            assert_eq!(settle_str(text, "peer").unwrap(), [], "{text:?}");
        }
    }

    #[test]
    fn every_problem_names_the_file_and_line() {
        let cases = [
            (
                "peer:\n  out: /x\n  ot: /y\n",
                "config file c.yaml, line 3: unknown key `ot` in `peer`",
            ),
            (
                "frob: 1\n",
                "config file c.yaml, line 1: unknown key `frob`",
            ),
            (
                "out: /x\n",
                "`out` is an option of peer: put it in that section",
            ),
            (
                "peer:\n  seed-time: 1m\n",
                "keys use `_` for `-`: `seed_time`",
            ),
            (
                "demo:\n  keep: /x\n",
                "--keep can only be given on the command line",
            ),
            // Checked although `peer` is the command being run: the whole file must be right.
            (
                "seed:\n  block_size: 1000\n",
                "line 2: `seed.block_size`: invalid value \"1000\" for --block-size",
            ),
            (
                "peer:\n  load: ctr\n",
                "(one of: auto, docker, podman, containerd, none)",
            ),
            (
                "json: yes\n",
                "invalid value \"yes\" for --json (one of: true, false)",
            ),
            (
                "peer:\n  out: [a, b]\n",
                "--out takes one value, not a list",
            ),
            ("peer:\n  out:\n", "`peer.out`: no value"),
            (
                "peer: 3\n",
                "line 1: `peer`: expected a mapping of `dfpull peer` options",
            ),
            ("seed:\n  sources: ['a,b']\n", "contains `,`"),
            (
                "peer:\n  out: [x\n",
                "config file c.yaml, line 2, column 8: unclosed bracket",
            ),
            (
                "peer:\n  out: a\n  out: b\n",
                "line 3, column 3: duplicate mapping key",
            ),
            ("- a\n", "line 1, column 1: expected a mapping"),
        ];
        for (text, want) in cases {
            let err = settle_str(text, "peer").unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(want), "{text:?}: {shown}");
            assert!(!shown.contains('\n'), "{shown:?}");
            assert_eq!(err.exit(), Exit::Usage);
        }
    }

    #[test]
    fn keys_follow_the_clap_definition() {
        let keys = keys();
        let has = |key: &str, env: &str| keys.iter().any(|(k, e)| k == key && e == env);
        for (key, env) in [
            ("json", "DFPULL_JSON"),
            ("peer.out", "DFPULL_OUT"),
            ("peer.namespace", "DFPULL_NAMESPACE"),
            ("peer.discover_timeout", "DFPULL_DISCOVER_TIMEOUT"),
            ("seed.sources", "DFPULL_SOURCES"),
            ("seed.no_mdns", "DFPULL_NO_MDNS"),
            ("status.wait", "DFPULL_STATUS_WAIT"),
            ("demo.peers", "DFPULL_DEMO_PEERS"),
        ] {
            assert!(has(key, env), "no key {key} for {env}: {keys:?}");
        }
        // Every option with a variable is a key somewhere (the file cannot lag behind a flag).
        let mut cmd = Cli::command();
        cmd.build();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                let Some(env) = arg.get_env().and_then(OsStr::to_str) else {
                    continue;
                };
                if env != CONFIG_ENV {
                    assert!(
                        keys.iter().any(|(_, e)| e == env),
                        "{} {env} has no key",
                        sub.get_name()
                    );
                }
            }
        }
        assert!(!keys.iter().any(|(_, e)| e == CONFIG_ENV));
    }

    #[test]
    fn the_documented_example_is_a_valid_file() {
        let example: String = include_str!("config.rs")
            .lines()
            .skip_while(|l| *l != "//! ```yaml")
            .skip(1)
            .take_while(|l| *l != "//! ```")
            .map(|l| {
                format!(
                    "{}\n",
                    l.trim_start_matches("//!").strip_prefix(' ').unwrap_or("")
                )
            })
            .collect();
        assert!(example.contains("peer:"), "{example}");
        let peer = settle_str(&example, "peer").unwrap();
        assert_eq!(var(&peer, "DFPULL_NAMESPACE"), Some("k8s.io"));
        assert_eq!(var(&peer, "DFPULL_LOAD"), Some("containerd"));
        let seed = settle_str(&example, "seed").unwrap();
        assert_eq!(var(&seed, "DFPULL_BLOCK_SIZE"), Some("4MiB"));
    }

    #[test]
    fn help_and_completions_never_read_the_file() {
        let env = |name: &str| (name == CONFIG_ENV).then(|| OsString::from("/nonexistent.yaml"));
        for line in [
            "completions bash",
            "man /tmp/x",
            "help peer",
            "--version",
            "",
        ] {
            assert_eq!(
                load(&args(line), env).unwrap(),
                Settings::default(),
                "{line}"
            );
        }
        let err = load(&args("peer"), env).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }
}
