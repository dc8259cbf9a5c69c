//! `mqttdump`: the reference decoder on the command line.
//!
//! Decodes hex-encoded bytes as a stream of MQTT control packets with [`Decoder`], the way one
//! side of a connection at a known protocol level would, and prints every packet, or the rule the
//! first malformed one breaks.
//!
//! # Usage
//!
//! ```text
//! cargo run -p mqtt-codec --example mqttdump -- --protocol <3|4|5> [--max-packet-size N] [--full] HEX
//! echo '30 07 00 03 61 2f 62 68 69' | cargo run -p mqtt-codec --example mqttdump -- --protocol 4 -
//! ```
//!
//! - `--protocol <3|4|5>` (required): the protocol level of the connection: 3 is MQTT 3.1,
//!   4 is MQTT 3.1.1, 5 is MQTT 5.0. The stream may start with any packet; a CONNECT in it is
//!   decoded by its own protocol level.
//! - `--max-packet-size N`: refuse packets larger than `N` bytes (fixed header included), as
//!   the connection's Maximum Packet Size would. An oversized fixed header is refused at once,
//!   even when the rest of the packet is absent.
//! - `HEX`: the bytes, as hexadecimal digits (either case). ASCII whitespace anywhere is
//!   ignored, so several arguments are joined; `-` reads the hex from standard input.
//! - `--full`: print every field; by default fields that are `None` or an empty list (most
//!   properties) are left out.
//! - `-h`, `--help`: print this usage and exit.
//!
//! Each packet is printed as a header line (`#1 @0 len=12 PUBLISH …`: number, byte offset,
//! length, type, first byte, Remaining Length) and its fields (the packet's `{:#?}` form). A
//! malformed packet is reported on standard output after the packets before it, with the
//! statement it breaks and the reason code:
//!
//! ```text
//! error at byte 2: PUBLISH: PUBLISH has both QoS bits set [MQTT-3.3.1-4] (reason code 0x81 Malformed Packet)
//! statement: MQTT-3.3.1-4
//! reason code: 0x81 Malformed Packet
//! ```
//!
//! # Exit status
//!
//! - `0`: every byte belongs to a complete, valid packet (an empty input is zero packets).
//! - `1`: a malformed packet (including one larger than `--max-packet-size`).
//! - `2`: the input ends inside a packet (`incomplete: …`, with the bytes still missing when the
//!   fixed header tells them).
//! - `64` (`EX_USAGE`): bad arguments or bad hex; the message goes to standard error.
//! - `74` (`EX_IOERR`): standard input could not be read or standard output written.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::process::ExitCode;

use bytes::Bytes;
use mqtt_codec::{Decoder, Error, ProtocolVersion, Status, read_fixed_header};

/// All bytes formed complete, valid packets.
const EXIT_OK: u8 = 0;
/// A malformed packet.
const EXIT_MALFORMED: u8 = 1;
/// The input ends inside a packet.
const EXIT_INCOMPLETE: u8 = 2;
/// `EX_USAGE` from `sysexits.h`.
const EX_USAGE: u8 = 64;
/// `EX_IOERR` from `sysexits.h`.
const EX_IOERR: u8 = 74;

const USAGE: &str = "\
Usage: mqttdump --protocol <3|4|5> [--max-packet-size N] [--full] HEX

Decodes HEX as a stream of MQTT control packets and prints each one.

Options:
  --protocol <3|4|5>     protocol level of the connection: 3 = MQTT 3.1, 4 = 3.1.1, 5 = 5.0
                         (a CONNECT in the stream is decoded by its own level)
  --max-packet-size N    refuse packets larger than N bytes, fixed header included
  --full                 also print fields that are None or empty (most properties)
  -h, --help             print this help

HEX is the bytes in hexadecimal; ASCII whitespace is ignored. `-` reads it from standard input.

Exit status: 0 all packets valid, 1 malformed packet, 2 input ends inside a packet,
64 usage error, 74 I/O error.
";

/// Where the hex comes from.
#[derive(Debug)]
enum Input {
    /// Standard input (`-`).
    Stdin,
    /// The positional arguments, joined.
    Args(String),
}

/// The parsed command line.
#[derive(Debug)]
struct Options {
    version: ProtocolVersion,
    max_packet_size: Option<u32>,
    full: bool,
    input: Input,
}

/// What the command line asks for.
#[derive(Debug)]
enum Command {
    Help,
    Dump(Options),
}

/// Why the program stops before decoding anything.
#[derive(Debug)]
enum Failure {
    /// A usage error: message for standard error.
    Usage(String),
    /// Reading standard input or writing standard output failed.
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

fn usage_error(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}

fn parse_protocol(value: &str) -> Result<ProtocolVersion, Failure> {
    value
        .parse::<u8>()
        .ok()
        .and_then(ProtocolVersion::from_level)
        .ok_or_else(|| usage_error(format!("--protocol must be 3, 4 or 5, not {value:?}")))
}

fn parse_max_packet_size(value: &str) -> Result<u32, Failure> {
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(usage_error(format!(
            "--max-packet-size must be a number from 1 to {}, not {value:?}",
            u32::MAX
        ))),
    }
}

/// Parses the arguments (without the program name).
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, Failure> {
    let mut args = args.into_iter();
    let mut version = None;
    let mut max_packet_size = None;
    let mut full = false;
    let mut positional: Vec<String> = Vec::new();
    let mut options_done = false;
    while let Some(arg) = args.next() {
        if options_done || arg == "-" || !arg.starts_with('-') {
            positional.push(arg);
            continue;
        }
        if arg == "--" {
            options_done = true;
            continue;
        }
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        if arg == "--full" {
            full = true;
            continue;
        }
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        if name != "--protocol" && name != "--max-packet-size" {
            return Err(usage_error(format!("unknown option {arg:?}")));
        }
        let value = match inline_value.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(usage_error(format!("{name} needs a value"))),
        };
        if name == "--protocol" {
            if version.is_some() {
                return Err(usage_error("--protocol given twice"));
            }
            version = Some(parse_protocol(&value)?);
        } else {
            if max_packet_size.is_some() {
                return Err(usage_error("--max-packet-size given twice"));
            }
            max_packet_size = Some(parse_max_packet_size(&value)?);
        }
    }
    let version = version.ok_or_else(|| usage_error("missing --protocol <3|4|5>"))?;
    let input = if positional.iter().any(|a| a == "-") {
        if positional.len() != 1 {
            return Err(usage_error(
                "`-` (standard input) cannot be combined with HEX arguments",
            ));
        }
        Input::Stdin
    } else if positional.is_empty() {
        return Err(usage_error("missing HEX (or `-` for standard input)"));
    } else {
        Input::Args(positional.join(" "))
    };
    Ok(Command::Dump(Options {
        version,
        max_packet_size,
        full,
        input,
    }))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex digits, ignoring ASCII whitespace anywhere.
fn parse_hex(text: &str) -> Result<Vec<u8>, Failure> {
    let mut digits = Vec::with_capacity(text.len());
    for (position, c) in text.char_indices() {
        if c.is_ascii_whitespace() {
            continue;
        }
        let digit = u8::try_from(c).ok().and_then(hex_digit).ok_or_else(|| {
            usage_error(format!(
                "bad hex: {c:?} at character {} is not a hex digit",
                position + 1
            ))
        })?;
        digits.push(digit);
    }
    let pairs = digits.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(usage_error(format!(
            "bad hex: odd number of hex digits ({}); each byte needs two",
            digits.len()
        )));
    }
    Ok(pairs
        .map(|pair| pair.iter().fold(0, |byte, digit| byte << 4 | digit))
        .collect())
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// Whether a line of `{:#?}` output is a field that is `None` or an empty list.
fn is_empty_field(line: &str) -> bool {
    let line = line.trim_start();
    let name = line
        .strip_suffix(": None,")
        .or_else(|| line.strip_suffix(": [],"));
    // Strings and byte strings are printed quoted and escaped, so only a field name matches.
    name.is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// Writes the `{:#?}` form of `value`, indented by four spaces; unless `full`, without the
/// fields that are `None` or empty (a struct left without fields is printed `Name {}`).
fn write_fields(out: &mut impl Write, value: &impl core::fmt::Debug, full: bool) -> io::Result<()> {
    let text = format!("{value:#?}");
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        if full {
            lines.push(line.to_owned());
            continue;
        }
        if is_empty_field(line) {
            continue;
        }
        let closing = line.trim_start();
        if let Some(last) = lines.last_mut().filter(|l| l.ends_with(" {"))
            && (closing == "}," || closing == "}")
        {
            last.push_str(closing);
            continue;
        }
        lines.push(line.to_owned());
    }
    for line in lines {
        writeln!(out, "    {line}")?;
    }
    Ok(())
}

fn write_error(out: &mut impl Write, offset: usize, error: &Error) -> io::Result<()> {
    writeln!(out, "error at byte {offset}: {error}")?;
    match error.statement() {
        Some(id) => writeln!(out, "statement: {id}")?,
        None => writeln!(out, "statement: none (section {})", error.section())?,
    }
    writeln!(out, "reason code: {}", error.reason_code())?;
    writeln!(
        out,
        "violation: {:?} (section {})",
        error.violation(),
        error.section()
    )
}

/// Decodes `data` as a stream of packets and writes them to `out`; returns the exit status.
fn dump(
    out: &mut impl Write,
    data: Bytes,
    version: ProtocolVersion,
    max_packet_size: Option<u32>,
    full: bool,
) -> io::Result<u8> {
    let max = max_packet_size.unwrap_or(Decoder::MAX_PACKET_SIZE);
    let mut decoder = Decoder::with_version(version).max_packet_size(max);
    let mut rest = data;
    let mut offset = 0;
    let mut count = 0;
    while !rest.is_empty() {
        match decoder.decode_bytes(&rest) {
            Ok(Status::Complete((packet, len))) => {
                count += 1;
                write!(out, "#{count} @{offset} len={len} {}", packet.packet_type())?;
                // The header was just read by the decoder with the same arguments.
                if let Ok(Status::Complete(header)) = read_fixed_header(&rest, Some(version), max) {
                    write!(
                        out,
                        " (first byte 0x{:02X}, remaining length {})",
                        header.first_byte, header.remaining_length
                    )?;
                }
                writeln!(out)?;
                write_fields(out, &packet, full)?;
                offset += len;
                rest = rest.slice(len.min(rest.len())..);
            }
            Ok(Status::Incomplete(missing)) => {
                match missing {
                    Some(n) => writeln!(
                        out,
                        "incomplete: packet at byte {offset} needs {n} more {}",
                        plural(n.get(), "byte", "bytes")
                    )?,
                    None => writeln!(
                        out,
                        "incomplete: packet at byte {offset} needs at least 1 more byte \
                         (fixed header incomplete: {} {} present)",
                        rest.len(),
                        plural(rest.len(), "byte", "bytes")
                    )?,
                }
                return Ok(EXIT_INCOMPLETE);
            }
            Err(error) => {
                write_error(out, offset, &error)?;
                return Ok(EXIT_MALFORMED);
            }
        }
    }
    writeln!(
        out,
        "ok: {count} {}, {offset} {}",
        plural(count, "packet", "packets"),
        plural(offset, "byte", "bytes")
    )?;
    Ok(EXIT_OK)
}

fn run() -> Result<u8, Failure> {
    let options = match parse_args(std::env::args().skip(1))? {
        Command::Help => {
            io::stdout().lock().write_all(USAGE.as_bytes())?;
            return Ok(EXIT_OK);
        }
        Command::Dump(options) => options,
    };
    let text = match options.input {
        Input::Args(text) => text,
        Input::Stdin => {
            let mut raw = Vec::new();
            io::stdin().lock().read_to_end(&mut raw)?;
            String::from_utf8(raw)
                .map_err(|_| usage_error("bad hex: standard input is not ASCII text"))?
        }
    };
    let data = Bytes::from(parse_hex(&text)?);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let status = dump(
        &mut out,
        data,
        options.version,
        options.max_packet_size,
        options.full,
    )?;
    out.flush()?;
    Ok(status)
}

fn main() -> ExitCode {
    match run() {
        Ok(status) => ExitCode::from(status),
        Err(Failure::Usage(message)) => {
            // Nothing more can be done if standard error is gone; the status still tells.
            let _ = writeln!(io::stderr(), "mqttdump: {message}\nTry `mqttdump --help`.");
            ExitCode::from(EX_USAGE)
        }
        Err(Failure::Io(e)) => {
            let _ = writeln!(io::stderr(), "mqttdump: I/O error: {e}");
            ExitCode::from(EX_IOERR)
        }
    }
}
