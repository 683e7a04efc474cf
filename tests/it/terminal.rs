//! Text output is for a terminal: what plugins and files say cannot drive it.

use crate::harness::{Home, lane_yaml};

/// A plugin whose every word tries to take over the terminal.
const EVIL: &str = r#"fn evaluate(ctx) {
    log("\x1b]0;pwned\x07 title");
    #{ defer: "held", detail: "\x1b[2J\x1b[31mred\nFAKE  trigger  line", hint: "\x1b[5mblink\r" }
}
"#;

fn assert_clean(what: &str, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{what} carries control characters: {text:?}"
    );
}

#[test]
fn control_characters_from_plugins_and_files_are_shown_escaped() {
    let home = Home::new();
    home.write("plugins/evil.rhai", EVIL);
    home.lane("a", &lane_yaml("1h", "  - use: evil", "[\"true\"]"));
    home.lane("b", &lane_yaml("1h", "", "[\"true\"]"));

    let check = home.ok(&["check"]);
    assert_clean("check", check.as_bytes());
    assert!(check.contains(r"\u{1b}[31mred\nFAKE"), "{check}");
    assert!(
        !check.lines().any(|l| l.starts_with("FAKE")),
        "no forged line: {check}"
    );

    let explain = home.ok(&["explain", "a"]);
    assert_clean("explain", explain.as_bytes());
    assert!(explain.contains(r"\u{1b}[5mblink\r"), "{explain}");
    assert!(explain.contains(r"\u{1b}]0;pwned\u{7} title"), "{explain}");

    let once = home.run(&["run", "--once"]);
    assert_eq!(once.status.code(), Some(0));
    assert_clean("run --once", &once.stdout);
    assert_clean("run --once (stderr)", &once.stderr);

    // JSON is escaped by JSON itself, and unchanged.
    let json = home.ok(&["check", "a", "--json"]);
    let d: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    assert_eq!(d["detail"], "\u{1b}[2J\u{1b}[31mred\nFAKE  trigger  line");

    // A lane file's own bytes, quoted back by status.
    home.lane(
        "c",
        "schedule:\n  every: 1h\n\"\\e[31mbogus\": 1\ncommand:\n  argv: [\"true\"]\n",
    );
    let status = home.run(&["status"]);
    assert_eq!(status.status.code(), Some(0));
    assert_clean("status", &status.stdout);
    assert_clean("status (stderr)", &status.stderr);
    assert!(
        String::from_utf8_lossy(&status.stderr).contains(r"\u{1b}[31mbogus"),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}
