//! The enrollment and key flows as a user runs them: the real `cardmesh` binary, real
//! files in temporary folders, no network.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn cardmesh<S: AsRef<str>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cardmesh"))
        .args(args.iter().map(AsRef::as_ref))
        .output()
        .expect("run cardmesh")
}

fn ok<S: AsRef<str> + std::fmt::Debug>(args: &[S]) -> String {
    let out = cardmesh(args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "cardmesh {args:?} failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn fails<S: AsRef<str> + std::fmt::Debug>(args: &[S]) -> String {
    let out = cardmesh(args);
    assert!(
        !out.status.success(),
        "cardmesh {args:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// HQ plus one enrolled store, by files only. Returns (hq dir, shop dir).
fn network(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (hq, shop) = (tmp.join("hq"), tmp.join("shop"));
    ok(&["init", "--hq", "--network", "test-chain", "--data", p(&hq)]);
    ok(&["init", "--data", p(&shop), "--label", "till 1"]);
    let request = shop.join("enroll-request.cmreq");
    let package = tmp.join("shop-1.cmjoin");
    ok(&[
        "enroll",
        p(&request),
        "--site",
        "shop-1",
        "--role",
        "store",
        "--data",
        p(&hq),
        "--out",
        p(&package),
    ]);
    ok(&["join", p(&package), "--data", p(&shop)]);
    (hq, shop)
}

#[test]
fn a_site_joins_by_request_certificate_and_join_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, shop) = network(tmp.path());
    let status = ok(&["status", "--data", p(&shop)]);
    assert!(status.contains("store at site shop-1"), "{status}");
    assert!(status.contains("test-chain"), "{status}");
    let hq_status = ok(&["status", "--data", p(&hq)]);
    assert!(hq_status.contains("hq at site hq"), "{hq_status}");
    assert!(
        hq_status.contains("members   2"),
        "HQ knows the new member: {hq_status}"
    );
    assert!(
        !shop.join("enroll-request.cmreq").exists(),
        "the request is spent"
    );
    let mode = fs::metadata(shop.join("node.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mode = fs::metadata(shop.join("network.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    ok(&["check", "--data", p(&shop)]);
}

/// `cardmesh keys ceremony` at HQ, from two component files it writes under `tmp`.
fn ceremony(tmp: &Path, hq: &Path) -> Vec<String> {
    let (a, b) = (tmp.join("a.txt"), tmp.join("b.txt"));
    fs::write(&a, "0123456789ABCDEF FEDCBA9876543210\n").unwrap();
    fs::write(&b, "1111111111111111222222222222222F\n").unwrap();
    [
        "keys",
        "ceremony",
        "--data",
        p(hq),
        "--component-files",
        p(&a),
        p(&b),
    ]
    .map(String::from)
    .to_vec()
}

/// HQ's keys for the shop's role, exported to `tmp/shop.cmkeys` and imported at the
/// shop: what the import printed.
fn hand_keys(tmp: &Path, hq: &Path, shop: &Path) -> String {
    let pkg = tmp.join("shop.cmkeys");
    let shop_id = node_id(shop);
    ok(&[
        "keys",
        "export",
        "--for",
        &shop_id,
        "--data",
        p(hq),
        "--out",
        p(&pkg),
    ]);
    ok(&["keys", "import", p(&pkg), "--data", p(shop)])
}

/// The node id `cardmesh status` shows for the node in `dir`.
fn node_id(dir: &Path) -> String {
    let status = ok(&["status", "--data", p(dir)]);
    let line = status.lines().next().unwrap();
    line.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn hq_alone_revokes_an_enrolled_node_once_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, shop) = network(tmp.path());
    let (shop_id, hq_id) = (node_id(&shop), node_id(&hq));
    let never_enrolled = "ab".repeat(32);
    let refused = |node: &str, reason: &str, data: &Path| {
        fails(&["revoke", node, "--reason", reason, "--data", p(data)])
    };

    let err = refused(&shop_id, "till stolen", &shop);
    assert!(err.contains("only HQ can enroll or revoke"), "{err}");
    let err = refused(&hq_id, "till stolen", &hq);
    assert!(err.contains("HQ cannot revoke itself"), "{err}");
    let err = refused(&never_enrolled, "till stolen", &hq);
    assert!(err.contains("not a member"), "{err}");
    let err = refused(&shop_id, "  ", &hq);
    assert!(err.contains("--reason"), "{err}");

    let out = ok(&[
        "revoke",
        &shop_id,
        "--reason",
        "till stolen",
        "--data",
        p(&hq),
    ]);
    assert!(out.contains("after entry 0"), "{out}");
    let status = ok(&["status", "--data", p(&hq)]);
    assert!(
        status.contains("revoked after entry 0 (till stolen)"),
        "{status}"
    );
    let err = refused(&shop_id, "shop closed", &hq);
    assert!(err.contains("already revoked (till stolen)"), "{err}");
    ok(&["check", "--data", p(&hq)]);
}

#[test]
fn a_network_made_by_hand_registers_a_shop_and_sells_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, shop) = network(tmp.path());
    let registry = |args: &[&str], data: &Path| {
        let mut all = vec!["registry"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data", p(data)]);
        all.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let shop_site = ["site", "shop-1", "--name", "Shop 1", "--merchant", "main"];

    let err = fails(&registry(&shop_site, &hq));
    assert!(err.contains("no merchant 'main'"), "{err}");
    ok(&[
        "settle",
        "merchant",
        "main",
        "--name",
        "Main",
        "--cycle",
        "daily",
        "--fee-bp",
        "60",
        "--data",
        p(&hq),
    ]);
    let err = fails(&registry(&shop_site, &shop));
    assert!(err.contains("only HQ"), "{err}");
    ok(&registry(&shop_site, &hq));
    ok(&registry(
        &["site", "hq", "--name", "Head office", "--merchant", "main"],
        &hq,
    ));
    let err = fails(&registry(
        &["terminal", "000000000201", "--site", "shop-9"],
        &hq,
    ));
    assert!(err.contains("site shop-9 is not registered"), "{err}");
    ok(&registry(
        &["terminal", "000000000201", "--site", "shop-1"],
        &hq,
    ));
    let cashier = [
        "operator", "cash-1", "--name", "Li Na", "--role", "cashier", "--site", "shop-1",
    ];
    let err = fails(&registry(&cashier, &hq));
    assert!(err.contains("give a PIN"), "{err}");
    let err = fails(&registry(&[&cashier[..], &["--pin", "12"]].concat(), &hq));
    assert!(err.contains("4 to 12 digits"), "{err}");
    let err = fails(&registry(
        &[
            "operator", "cash-1", "--name", "Li Na", "--role", "boss", "--site", "shop-1", "--pin",
            "1111",
        ],
        &hq,
    ));
    assert!(err.contains("unknown operator role 'boss'"), "{err}");
    ok(&registry(&[&cashier[..], &["--pin", "1111"]].concat(), &hq));
    let err = fails(&registry(&["price", "cola", "3"], &hq));
    assert!(
        err.contains("product cola is not in the price book"),
        "{err}"
    );
    ok(&registry(
        &["product", "cola", "--name", "Cola 330ml", "--unit", "pc"],
        &hq,
    ));
    ok(&registry(&["price", "cola", "3"], &hq));
    let err = fails(&registry(
        &[
            "discount",
            "standard",
            "--from",
            "7:00",
            "--paid-percent",
            "90",
        ],
        &hq,
    ));
    assert!(err.contains("'7:00' is not a time of day"), "{err}");
    ok(&registry(
        &["discount", "standard", "--paid-percent", "90"],
        &hq,
    ));
    let err = fails(&registry(
        &["limits", "--anonymous-max-balance", "9000"],
        &hq,
    ));
    assert!(err.contains("anonymous card may not hold more"), "{err}");
    ok(&registry(&["limits", "--pin-above", "100"], &hq));
    let shown = ok(&registry(&["show"], &hq));
    assert!(!shown.contains("1111"), "a PIN is never shown: {shown}");
    for line in [
        "shop-1       Shop 1",
        "000000000201  shop-1",
        "cash-1       Li Na                cashier   shop-1       PIN set",
        "PIN above 100.00",
        "cola         Cola 330ml           pc     3.00",
        "standard     all day              pays 90%",
    ] {
        assert!(shown.contains(line), "{line:?} in {shown}");
    }

    // Card keys, and a card made, sold and loaded at HQ's desk.
    ok(&ceremony(tmp.path(), &hq));
    hand_keys(tmp.path(), &hq, &shop);
    ok(&registry(
        &["terminal", "000000000001", "--site", "hq"],
        &hq,
    ));
    ok(&registry(
        &[
            "operator", "admin-1", "--name", "Admin", "--role", "admin", "--site", "hq", "--pin",
            "9999",
        ],
        &hq,
    ));
    let (batch, card) = (tmp.path().join("batch.key"), tmp.path().join("new.card"));
    fs::write(&batch, "0123456789ABCDEFFEDCBA9876543210\n").unwrap();
    ok(&["keys", "import-transport", p(&batch), "--data", p(&hq)]);
    ok(&[
        "blank-card",
        p(&card),
        "--serial",
        "C0FFEE0000000001",
        "--transport-key",
        p(&batch),
    ]);
    let pos = |data: &Path, terminal: &str, args: &[&str]| {
        let mut all = vec!["pos", "--data", p(data), "--terminal", terminal];
        all.extend_from_slice(args);
        all.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let desk = |args: &[&str]| pos(&hq, "000000000001", args);
    ok(&desk(&["login", "admin-1", "--pin", "9999"]));
    ok(&desk(&[
        "personalize",
        "--card-file",
        p(&card),
        "--expiry",
        "2031-12-31",
        "--class",
        "standard",
        "--pin",
        "123456",
    ]));
    ok(&desk(&["issue", "--card-file", p(&card)]));
    ok(&desk(&[
        "load",
        "--amount",
        "100",
        "--pin",
        "123456",
        "--card-file",
        p(&card),
    ]));

    let stick = tmp.path().join("stick");
    fs::create_dir(&stick).unwrap();
    ok(&["sync", "usb", p(&stick), "--data", p(&hq)]);
    ok(&["sync", "usb", p(&stick), "--data", p(&shop)]);
    assert_eq!(
        ok(&registry(&["show"], &shop)),
        ok(&registry(&["show"], &hq))
    );
    let till = |args: &[&str]| pos(&shop, "000000000201", args);
    let err = fails(&till(&["login", "cash-1", "--pin", "1112"]));
    assert!(err.contains("PIN"), "{err}");
    let out = ok(&till(&["login", "cash-1", "--pin", "1111"]));
    assert!(out.contains("cash-1"), "{out}");
    let sale = ok(&till(&[
        "purchase",
        "--item",
        "cola:2",
        "--card-file",
        p(&card),
    ]));
    assert!(
        sale.contains("cola x 2 @ 3.00 (90%) = 5.40") && sale.contains("balance 100.00 -> 94.60"),
        "{sale}"
    );

    // The cashier leaves: once the change reaches the shop, their open session ends at
    // the next operation and their PIN opens nothing.
    let err = fails(&registry(&["remove-operator", "cash-9"], &hq));
    assert!(err.contains("there is no operator cash-9"), "{err}");
    ok(&registry(&["remove-operator", "cash-1"], &hq));
    assert!(!ok(&registry(&["show"], &hq)).contains("cash-1"));
    ok(&["sync", "usb", p(&stick), "--data", p(&hq)]);
    ok(&["sync", "usb", p(&stick), "--data", p(&shop)]);
    let one_cola = till(&["purchase", "--item", "cola:1", "--card-file", p(&card)]);
    let err = fails(&one_cola);
    assert!(
        err.contains("operator cash-1 is not in the network registry"),
        "{err}"
    );
    let err = fails(&one_cola);
    assert!(err.contains("log"), "the session has ended: {err}");
    let err = fails(&till(&["login", "cash-1", "--pin", "1111"]));
    assert!(
        err.contains("operator cash-1 is not in the network registry"),
        "{err}"
    );
    ok(&["check", "--data", p(&hq)]);
    ok(&["check", "--data", p(&shop)]);
}

#[test]
fn a_node_refuses_to_start_with_a_key_others_can_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, shop) = network(tmp.path());
    fs::set_permissions(shop.join("node.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(&["status", "--data", p(&shop)]);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn a_folder_is_initialized_only_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, _) = network(tmp.path());
    let err = fails(&["init", "--hq", "--network", "again", "--data", p(&hq)]);
    assert!(err.contains("already a cardmesh node"), "{err}");
}

#[test]
fn a_tampered_request_or_a_package_for_another_node_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, _) = network(tmp.path());
    let other = tmp.path().join("other");
    ok(&["init", "--data", p(&other)]);
    let request = other.join("enroll-request.cmreq");
    let mut bytes = fs::read(&request).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bent = tmp.path().join("bent.cmreq");
    fs::write(&bent, &bytes).unwrap();
    let err = fails(&[
        "enroll",
        p(&bent),
        "--site",
        "shop-9",
        "--role",
        "store",
        "--data",
        p(&hq),
    ]);
    assert!(err.contains("altered or forged"), "{err}");
    let err = fails(&[
        "join",
        p(&tmp.path().join("shop-1.cmjoin")),
        "--data",
        p(&other),
    ]);
    assert!(err.contains("is for node"), "{err}");
    let err = fails(&[
        "enroll",
        p(&request),
        "--site",
        "shop-9",
        "--role",
        "hq",
        "--data",
        p(&hq),
    ]);
    assert!(err.contains("exactly one HQ"), "{err}");
}

#[test]
fn the_key_ceremony_shows_check_values_runs_once_and_hands_out_role_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, shop) = network(tmp.path());
    let out = ok(&ceremony(tmp.path(), &hq));
    // Check values computed independently with pycryptodome (3DES-ECB of 8 zero bytes).
    assert!(out.contains("component A check value: 08D7B4"), "{out}");
    assert!(out.contains("component B check value: 505B17"), "{out}");
    assert!(out.contains("combined key check value: ABDB07"), "{out}");
    assert!(
        !out.to_uppercase().contains("0123456789ABCDEF"),
        "a component was printed"
    );
    let err = fails(&ceremony(tmp.path(), &hq));
    assert!(err.contains("can never be changed"), "{err}");

    let out = hand_keys(tmp.path(), &hq, &shop);
    assert_eq!(out.trim(), "installed keys: purchase, maintenance");
    assert_eq!(
        ok(&["keys", "show", "--data", p(&hq)]).trim(),
        "keys held: purchase, load, tac, pin-unblock, maintenance"
    );
    let pkg = tmp.path().join("shop.cmkeys");
    let err = fails(&["keys", "import", p(&pkg), "--data", p(&hq)]);
    assert!(err.contains("holds the master keys"), "{err}");
}

#[test]
fn a_component_that_is_not_32_hex_digits_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, _) = network(tmp.path());
    let (a, b) = (tmp.path().join("a.txt"), tmp.path().join("b.txt"));
    fs::write(&a, "0123456789ABCDEFFEDCBA98765432").unwrap();
    fs::write(&b, "1111111111111111222222222222222F").unwrap();
    let err = fails(&[
        "keys",
        "ceremony",
        "--data",
        p(&hq),
        "--component-files",
        p(&a),
        p(&b),
    ]);
    assert!(err.contains("got 30 digits"), "{err}");
    fs::write(&a, "1111111111111111222222222222222F").unwrap();
    let err = fails(&[
        "keys",
        "ceremony",
        "--data",
        p(&hq),
        "--component-files",
        p(&a),
        p(&b),
    ]);
    assert!(err.contains("identical"), "{err}");
}
