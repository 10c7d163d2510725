//! The ESC/POS receipt printer over a real socat pty pair: the printer end is decoded
//! and the receipt text asserted, Chinese (GB18030) included.

#[path = "common/socat.rs"]
mod socat;

use std::io::Write;
use std::time::Duration;

use cardmesh_drivers::printer::{
    Align, EscPosError, PrinterConfig, PrinterError, PrinterSink, Receipt, ReceiptLine,
    SerialPrinter, escpos,
};
use cardmesh_model::Money;
use socat::PtyPair;

fn config(pair: &PtyPair) -> PrinterConfig {
    PrinterConfig {
        port: pair.host.to_str().unwrap().to_string(),
        baud: 9600,
        header: vec!["第一加油站".into(), "No.1 Fuel Station".into()],
        footer: vec!["谢谢惠顾 欢迎再来".into()],
        width: 32,
    }
}

fn fill_receipt() -> Receipt {
    Receipt {
        items: vec![
            ReceiptLine::new("卡号 Card", "3100000000000042"),
            ReceiptLine::new("油品 Grade", "95号汽油"),
            ReceiptLine::new("单价 Price/L", "8.10"),
            ReceiptLine::new("升数 Litres", "24.691"),
            ReceiptLine::new("金额 Amount", "200.00"),
        ],
        balance_after: Some(Money::from_fen(123_456)),
        reprint: false,
    }
}

#[test]
fn chinese_receipt_is_printed_and_decoded_at_the_printer() {
    let pair = PtyPair::new();
    let sink = PrinterSink::spawn(pair.open_device());
    let mut printer = SerialPrinter::open(&config(&pair)).unwrap();
    printer.print(&fill_receipt()).unwrap();
    let p = sink.next_receipt(Duration::from_secs(5)).unwrap();
    assert!(p.cut);
    let text = p.text();
    let expected = "\
第一加油站
No.1 Fuel Station
--------------------------------
卡号 Card       3100000000000042
油品 Grade              95号汽油
单价 Price/L                8.10
升数 Litres               24.691
金额 Amount               200.00
--------------------------------
卡余额 Balance           1234.56
谢谢惠顾 欢迎再来";
    assert!(text.starts_with(expected), "printed:\n{text}");
    assert!(!text.contains("REPRINT"));
    assert_eq!(p.lines[0].align, Align::Center);
    assert!(p.lines[0].bold && p.lines[0].large);
    let balance = p
        .lines
        .iter()
        .find(|l| l.text.starts_with("卡余额"))
        .unwrap();
    assert!(balance.bold);
}

#[test]
fn a_reprint_is_marked_and_receipts_come_one_by_one() {
    let pair = PtyPair::new();
    let sink = PrinterSink::spawn(pair.open_device());
    let mut printer = SerialPrinter::open(&config(&pair)).unwrap();
    printer.print(&fill_receipt()).unwrap();
    let mut again = fill_receipt();
    again.reprint = true;
    printer.print(&again).unwrap();
    let first = sink.next_receipt(Duration::from_secs(5)).unwrap();
    let second = sink.next_receipt(Duration::from_secs(5)).unwrap();
    assert!(!first.text().contains("重印"));
    assert!(second.text().contains("** 重印 REPRINT **"));
    assert_eq!(
        first.text().replace('\n', ""),
        second
            .text()
            .replace("** 重印 REPRINT **\n", "")
            .replace('\n', "")
    );
    assert!(matches!(
        sink.next_receipt(Duration::from_millis(100)),
        Err(PrinterError::Timeout)
    ));
}

#[test]
fn a_damaged_stream_is_a_typed_error_at_the_printer() {
    let pair = PtyPair::new();
    let sink = PrinterSink::spawn(pair.open_device());
    let mut host = serialport::new(pair.host.to_str().unwrap(), 9600)
        .open()
        .unwrap();
    host.write_all(&[0x1B, b'@', 0x1B, b'Z', 0x00, b'\n', 0x1D, b'V', 0x01])
        .unwrap();
    let e = sink.next_receipt(Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(e, PrinterError::Decode(EscPosError::UnknownCommand(ref c, 2)) if c == &[0x1B, b'Z']),
        "{e:?}"
    );
    // The next receipt on the line is read normally. It goes through the same handle:
    // a process another test forks at the moment this one closes the tty holds its
    // descriptor, and so its lock, until it execs, and reopening it can then fail.
    host.write_all(&escpos::render(&config(&pair), &fill_receipt()))
        .unwrap();
    assert!(
        sink.next_receipt(Duration::from_secs(5))
            .unwrap()
            .text()
            .contains("95号汽油")
    );
}

#[test]
fn a_missing_printer_port_is_a_clear_error() {
    let mut cfg = config(&PtyPair::new());
    cfg.port = "/dev/cardmesh-no-printer".into();
    let e = SerialPrinter::open(&cfg).unwrap_err();
    assert!(e.to_string().contains("/dev/cardmesh-no-printer"), "{e}");
}
