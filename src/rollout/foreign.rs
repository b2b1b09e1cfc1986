//! Text others wrote (the kubelet, admission plugins, webhooks, whoever may
//! write pod status) reduced before it reaches status, history, Events and
//! alerts: only plain characters, and never longer than a bound, whatever
//! was sent (docs/security.md, "Bounded status").

/// A Kubernetes object or container name as the operator repeats it: the
/// characters of a DNS subdomain only, at most 63 of them.
pub fn name(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(63)
        .collect();
    if kept.is_empty() {
        "?".to_string()
    } else {
        kept
    }
}

/// A phrase of someone else's explanation: printable ASCII without quotes
/// or backslashes, runs of whitespace made one space, cut to `max` bytes
/// with "…" when longer.
pub fn phrase(s: &str, max: usize) -> String {
    let mut out = String::new();
    for word in s.split_whitespace() {
        let word: String = word
            .chars()
            .filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '`'))
            .collect();
        if word.is_empty() {
            continue;
        }
        let sep = usize::from(!out.is_empty());
        if out.len() + sep + word.len() > max {
            let room = max.saturating_sub(out.len() + sep);
            if room > 0 {
                if sep == 1 {
                    out.push(' ');
                }
                out.push_str(&word[..room]);
            }
            out.push('…');
            return out;
        }
        if sep == 1 {
            out.push(' ');
        }
        out.push_str(&word);
    }
    out
}

/// `s` cut to at most `max` bytes, on a character boundary: for what the
/// caches keep, where no reader needs a marker.
pub fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_only_name_characters() {
        assert_eq!(name("model-server"), "model-server");
        assert_eq!(name("a\"b c\n<d>"), "abcd");
        assert_eq!(name(""), "?");
        assert_eq!(name(&"x".repeat(300)).len(), 63);
    }

    #[test]
    fn phrases_are_plain_and_bounded() {
        assert_eq!(
            phrase("maximum  cpu usage\nper Container is 1", 100),
            "maximum cpu usage per Container is 1"
        );
        assert_eq!(phrase("say \"hi\" \u{1b}[31m", 100), "say hi [31m");
        assert_eq!(phrase("abcdef ghijkl", 9), "abcdef gh…");
        assert_eq!(phrase(&"y".repeat(10_000), 64).len(), 64 + '…'.len_utf8());
        assert_eq!(phrase("", 10), "");
    }
}
