//! ESC/POS both ways, pure: a receipt rendered to printer bytes (GB18030 text), and a
//! printer's byte stream decoded back into lines with their style, which is how tests
//! and the demo read what was printed.
//!
//! Commands used: ESC @ init, FS & Chinese character mode (GB18030 on Chinese
//! printers), ESC a n align, ESC E n bold, GS ! n size, LF print line, ESC d n feed
//! lines, GS V m cut, ESC p m t1 t2 cash drawer.

use encoding_rs::GB18030;
use thiserror::Error;

use super::{PrinterConfig, Receipt};

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const FS: u8 = 0x1C;
const LF: u8 = 0x0A;

/// Horizontal alignment of a printed line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Align {
    /// ESC a 0.
    #[default]
    Left,
    /// ESC a 1.
    Center,
    /// ESC a 2.
    Right,
}

/// One printed line with the style it was printed in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrintedLine {
    /// The text, decoded from GB18030.
    pub text: String,
    /// ESC E 1 was in force.
    pub bold: bool,
    /// GS ! made the characters larger than normal.
    pub large: bool,
    /// ESC a.
    pub align: Align,
}

/// What a printer printed between an init and a cut.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrintedReceipt {
    /// Printed lines, blank feeds included as empty lines.
    pub lines: Vec<PrintedLine>,
    /// Whether the paper was cut at the end.
    pub cut: bool,
}

impl PrintedReceipt {
    /// The text of all lines, one per line, trailing spaces trimmed.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.text.trim_end())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A byte stream that is not the ESC/POS this module writes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EscPosError {
    /// An escape sequence this decoder does not know.
    #[error("unknown printer command {0:02x?} at byte {1}")]
    UnknownCommand(Vec<u8>, usize),
    /// The stream ends inside a command.
    #[error("printer command cut off at byte {0}")]
    Truncated(usize),
    /// Text bytes that are not GB18030.
    #[error("line {0} is not valid GB18030 text")]
    BadText(usize),
    /// Text after the last LF that was never printed.
    #[error("{0} bytes of text were sent but never printed (no LF)")]
    Unprinted(usize),
}

/// Display columns of `s` on the printer: CJK and other wide characters take two.
pub fn columns(s: &str) -> usize {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

/// Control characters in receipt text would be printer commands: they become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn text(out: &mut Vec<u8>, s: &str) {
    let s = clean(s);
    let (bytes, _, _) = GB18030.encode(&s);
    out.extend_from_slice(&bytes);
    out.push(LF);
}

/// `label` left and `value` right on a line of `width` columns (on two lines if they
/// do not fit on one).
pub fn two_columns(label: &str, value: &str, width: usize) -> Vec<String> {
    let (l, v) = (clean(label), clean(value));
    let used = columns(&l) + columns(&v);
    if used < width {
        vec![format!("{l}{}{v}", " ".repeat(width - used))]
    } else {
        let pad = width.saturating_sub(columns(&v));
        vec![l, format!("{}{v}", " ".repeat(pad))]
    }
}

/// The bytes that print `r` with the header and footer of `cfg`.
pub fn render(cfg: &PrinterConfig, r: &Receipt) -> Vec<u8> {
    let mut out = vec![ESC, b'@', FS, b'&'];
    out.extend_from_slice(&[ESC, b'a', 1]);
    for (i, h) in cfg.header.iter().enumerate() {
        if i == 0 {
            out.extend_from_slice(&[ESC, b'E', 1, GS, b'!', 0x11]);
            text(&mut out, h);
            out.extend_from_slice(&[ESC, b'E', 0, GS, b'!', 0x00]);
        } else {
            text(&mut out, h);
        }
    }
    if r.reprint {
        out.extend_from_slice(&[ESC, b'E', 1]);
        text(&mut out, "** 重印 REPRINT **");
        out.extend_from_slice(&[ESC, b'E', 0]);
    }
    out.extend_from_slice(&[ESC, b'a', 0]);
    text(&mut out, &"-".repeat(cfg.width));
    for item in &r.items {
        for line in two_columns(&item.label, &item.value, cfg.width) {
            text(&mut out, &line);
        }
    }
    if let Some(b) = r.balance_after {
        text(&mut out, &"-".repeat(cfg.width));
        out.extend_from_slice(&[ESC, b'E', 1]);
        for line in two_columns("卡余额 Balance", &b.to_string(), cfg.width) {
            text(&mut out, &line);
        }
        out.extend_from_slice(&[ESC, b'E', 0]);
    }
    out.extend_from_slice(&[ESC, b'a', 1]);
    for f in &cfg.footer {
        text(&mut out, f);
    }
    out.extend_from_slice(&[ESC, b'd', 3, GS, b'V', 1]);
    out
}

/// Decodes a printer byte stream. Never panics.
pub fn decode(bytes: &[u8]) -> Result<PrintedReceipt, EscPosError> {
    let mut r = PrintedReceipt::default();
    let mut style = PrintedLine::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut i = 0;
    let arg = |i: usize, n: usize| bytes.get(i..i + n).ok_or(EscPosError::Truncated(i));
    while i < bytes.len() {
        match bytes[i] {
            LF => {
                let (t, had_errors) = GB18030.decode_without_bom_handling(&pending);
                if had_errors {
                    return Err(EscPosError::BadText(r.lines.len() + 1));
                }
                r.lines.push(PrintedLine {
                    text: t.into_owned(),
                    ..style.clone()
                });
                pending.clear();
                i += 1;
            }
            ESC => {
                let cmd = *arg(i + 1, 1)?.first().unwrap_or(&0);
                i += 2;
                match cmd {
                    b'@' => style = PrintedLine::default(),
                    b'E' => {
                        style.bold = arg(i, 1)?[0] & 1 == 1;
                        i += 1;
                    }
                    b'a' => {
                        style.align = match arg(i, 1)?[0] {
                            0 | b'0' => Align::Left,
                            1 | b'1' => Align::Center,
                            2 | b'2' => Align::Right,
                            _ => {
                                return Err(EscPosError::UnknownCommand(
                                    bytes[i - 2..=i].to_vec(),
                                    i - 2,
                                ));
                            }
                        };
                        i += 1;
                    }
                    b'd' => {
                        for _ in 0..arg(i, 1)?[0] {
                            r.lines.push(PrintedLine::default());
                        }
                        i += 1;
                    }
                    b'p' => {
                        arg(i, 3)?;
                        i += 3;
                    }
                    _ => return Err(EscPosError::UnknownCommand(vec![ESC, cmd], i - 2)),
                }
            }
            GS => {
                let cmd = *arg(i + 1, 1)?.first().unwrap_or(&0);
                i += 2;
                match cmd {
                    b'!' => {
                        style.large = arg(i, 1)?[0] != 0;
                        i += 1;
                    }
                    b'V' => {
                        let m = arg(i, 1)?[0];
                        // Function B (m = 65, 66) carries a feed amount.
                        i += if m == 65 || m == 66 { 2 } else { 1 };
                        arg(i - 1, 1)?;
                        r.cut = true;
                    }
                    _ => return Err(EscPosError::UnknownCommand(vec![GS, cmd], i - 2)),
                }
            }
            FS => {
                let cmd = *arg(i + 1, 1)?.first().unwrap_or(&0);
                if cmd != b'&' && cmd != b'.' {
                    return Err(EscPosError::UnknownCommand(vec![FS, cmd], i));
                }
                i += 2;
            }
            b => {
                pending.push(b);
                i += 1;
            }
        }
    }
    if !pending.is_empty() {
        return Err(EscPosError::Unprinted(pending.len()));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::ReceiptLine;
    use cardmesh_model::Money;
    use proptest::prelude::*;

    fn cfg() -> PrinterConfig {
        PrinterConfig {
            port: String::new(),
            baud: 9600,
            header: vec!["中石化 第一加油站".into(), "Station 1".into()],
            footer: vec!["谢谢惠顾 Thank you".into()],
            width: 32,
        }
    }

    fn receipt() -> Receipt {
        Receipt {
            items: vec![
                ReceiptLine::new("油品 Grade", "92#"),
                ReceiptLine::new("升数 Litres", "24.691"),
            ],
            balance_after: Some(Money::from_fen(80_000)),
            reprint: false,
        }
    }

    #[test]
    fn render_then_decode_gives_the_receipt_back() {
        let p = decode(&render(&cfg(), &receipt())).unwrap();
        assert!(p.cut);
        assert_eq!(p.lines[0].text, "中石化 第一加油站");
        assert!(p.lines[0].bold && p.lines[0].large);
        assert_eq!(p.lines[0].align, Align::Center);
        assert!(!p.lines[1].bold);
        let grade = p.lines.iter().find(|l| l.text.starts_with("油品")).unwrap();
        assert_eq!(columns(&grade.text), 32);
        assert!(grade.text.ends_with("92#"));
        assert_eq!(grade.align, Align::Left);
        let bal = p.lines.iter().find(|l| l.text.contains("Balance")).unwrap();
        assert!(bal.bold && bal.text.ends_with("800.00"));
        assert!(!p.text().contains("REPRINT"));
    }

    #[test]
    fn chinese_text_goes_out_as_gb18030() {
        let bytes = render(&cfg(), &receipt());
        // 加油站 in GB18030.
        let gb = [0xBC, 0xD3, 0xD3, 0xCD, 0xD5, 0xBE];
        assert!(bytes.windows(gb.len()).any(|w| w == gb));
    }

    #[test]
    fn reprint_is_marked_and_control_characters_cannot_inject_commands() {
        let mut r = receipt();
        r.reprint = true;
        r.items.push(ReceiptLine::new("x\x1b@\x1dV\x01", "y\n"));
        let p = decode(&render(&cfg(), &r)).unwrap();
        assert!(p.text().contains("** 重印 REPRINT **"));
        assert!(p.lines.iter().any(|l| l.text.starts_with("x @ V ")));
    }

    #[test]
    fn long_lines_wrap_to_two() {
        assert_eq!(
            two_columns(&"长".repeat(15), "123.45", 32),
            vec!["长".repeat(15), format!("{}123.45", " ".repeat(26))]
        );
    }

    #[test]
    fn bad_streams_are_typed_errors() {
        assert_eq!(decode(&[ESC]), Err(EscPosError::Truncated(1)));
        assert_eq!(decode(&[ESC, b'E']), Err(EscPosError::Truncated(2)));
        assert!(matches!(
            decode(&[ESC, b'Z', 0]),
            Err(EscPosError::UnknownCommand(_, 0))
        ));
        assert_eq!(decode(b"abc"), Err(EscPosError::Unprinted(3)));
        assert_eq!(decode(&[0x81, 0x20, LF]), Err(EscPosError::BadText(1)));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_text_survives_a_print(label in "\\PC{0,20}", value in "\\PC{0,12}") {
            let r = Receipt { items: vec![ReceiptLine::new(&label, &value)], balance_after: None, reprint: false };
            let text = decode(&render(&cfg(), &r)).unwrap().text();
            let want: Vec<_> = two_columns(&label, &value, 32).iter().map(|l| l.trim_end().to_string()).collect();
            let want = want.join("\n");
            prop_assert!(text.contains(&want), "{text:?} lacks {want:?}");
        }
    }
}
