//! What reaches the terminal. Names, images, messages and reasons come from
//! objects that other people (or other teams) write; an escape sequence in
//! any of them could rewrite the screen, hide a line or fake a status. Every
//! line the plugin prints goes through `printable`.

/// `text` with every control character other than a newline or a tab, and
/// every bidirectional override (the "Trojan Source" characters), shown as
/// its escape (`\u{1b}`) instead of being interpreted by the terminal.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let hidden = (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
        if hidden {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints to stdout, made printable.
macro_rules! say {
    ($($arg:tt)*) => {
        print!("{}", $crate::terminal::printable(&format!($($arg)*)))
    };
}

/// Prints a line to stdout, made printable.
macro_rules! sayln {
    ($($arg:tt)*) => {
        println!("{}", $crate::terminal::printable(&format!($($arg)*)))
    };
}

/// Prints a line to stderr, made printable.
macro_rules! warnln {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::terminal::printable(&format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escapes_and_overrides_are_shown_not_interpreted() {
        assert_eq!(printable("ok\tline\n"), "ok\tline\n");
        assert_eq!(printable("img\u{1b}[2J:1"), "img\\u{1b}[2J:1");
        assert_eq!(printable("a\rb"), "a\\u{d}b");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(printable("modèle 2.1 ✓"), "modèle 2.1 ✓");
    }
}
