//! How the CLI reads keys and values from arguments and shows them: UTF-8 text by default
//! (bytes that are not printable shown as `\xNN`, a backslash as `\\`), or hex with `--hex`.

use std::fmt::Write as _;

/// The encoding of keys and values on the command line and in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BytesFormat {
    /// UTF-8 in, escaped text out.
    Text,
    /// Hex in and out.
    Hex,
}

impl BytesFormat {
    /// The bytes an argument stands for.
    pub fn parse(self, arg: &str) -> Result<Vec<u8>, String> {
        match self {
            Self::Text => Ok(arg.as_bytes().to_vec()),
            Self::Hex => parse_hex(arg),
        }
    }

    /// `bytes` for display.
    pub fn show(self, bytes: &[u8]) -> String {
        match self {
            Self::Text => escape(bytes),
            Self::Hex => bytes.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            }),
        }
    }
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return Err(format!("{s:?} is not hex: odd number of digits"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| format!("{s:?} is not hex"))
        })
        .collect()
}

/// Printable UTF-8 as is; control characters, invalid UTF-8 and `\` escaped, so the output
/// is one line and says exactly which bytes are stored.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn text_escapes_what_is_not_printable() {
        let f = BytesFormat::Text;
        assert_eq!(f.show(b"plain key"), "plain key");
        assert_eq!(f.show("é".as_bytes()), "é");
        assert_eq!(f.show(b"a\tb\\\xff\x00"), "a\\x09b\\\\\\xff\\x00");
        assert_eq!(f.parse("k").unwrap(), b"k");
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_digits() {
        let f = BytesFormat::Hex;
        assert_eq!(f.parse("00ff10").unwrap(), [0, 255, 16]);
        assert_eq!(f.parse("0xAB").unwrap(), [0xab]);
        assert_eq!(f.show(&[0, 255, 16]), "00ff10");
        assert!(f.parse("abc").is_err());
        assert!(f.parse("zz").is_err());
        assert!(f.parse("é0").is_err());
    }
}
