//! The LM's plan: the metadata its chain of thought holds (`<think>\n{yaml}\n</think>`), read
//! from generated text and written back for phase 2 as upstream reads and writes it
//! (`llm_inference.py` `parse_lm_output` and `_format_metadata_as_cot`).
//!
//! Writing follows PyYAML's `dump(sort_keys=True, allow_unicode=True)` for the values a plan
//! holds: integers bare; strings plain unless PyYAML would read them back as something else or
//! they contain an indicator, then single-quoted; long values folded at a space once a line has
//! passed 80 columns, continuing on lines indented by two spaces.

use std::fmt::Write as _;

/// What the chain of thought says about the piece. Text fields hold what the model wrote (or the
/// user gave), trimmed; numbers that did not parse stay text, as upstream keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub bpm: Option<Value>,
    pub caption: Option<String>,
    pub duration: Option<Value>,
    pub genres: Option<String>,
    pub keyscale: Option<String>,
    pub language: Option<String>,
    pub timesignature: Option<String>,
}

/// A number field: an integer, or the text the model wrote when it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            Value::Text(_) => None,
        }
    }

    fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        python_int(raw).map_or_else(|| Value::Text(raw.to_string()), Value::Int)
    }
}

/// Python's `int(s)` for a stripped string: optional sign, digits with single underscores between.
fn python_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !well_formed {
        return None;
    }
    s.replace('_', "").parse().ok()
}

impl Plan {
    /// Every field phase 1 would otherwise write, so the LM need not plan (upstream
    /// `has_all_metas`: bpm, key, time signature and duration; caption and language are optional).
    pub fn has_all_metas(&self) -> bool {
        self.bpm.is_some() && self.keyscale.is_some() && self.timesignature.is_some() && self.duration.is_some()
    }

    /// Read the metadata from generated text: the part between `<think>` and `</think>` (or,
    /// without them, everything before the first audio code). A line with no indent and a `:`
    /// starts a field; indented lines continue it; lines starting with `<` are skipped. The
    /// caption's lines are re-joined with single spaces.
    pub fn parse(text: &str) -> Self {
        let reasoning = match (text.find("<think>"), text.find("</think>")) {
            (Some(open), Some(close)) if close >= open + "<think>".len() => text[open + "<think>".len()..close].trim(),
            _ => text.split("<|audio_code_").next().unwrap_or("").trim(),
        };
        let mut plan = Plan::default();
        let mut field: Option<(String, Vec<&str>)> = None;
        for line in reasoning.split('\n') {
            if line.trim_start_matches(PY_WHITESPACE).starts_with('<') {
                continue;
            }
            let first_is_space = line.chars().next().is_some_and(|c| c.is_whitespace());
            if !line.is_empty() && !first_is_space && line.contains(':') {
                if let Some((key, lines)) = field.take() {
                    plan.set(&key, &lines);
                }
                let (key, value) = line.split_once(':').expect("the line has a colon");
                let mut lines = Vec::new();
                if !value.trim_matches(PY_WHITESPACE).is_empty() {
                    lines.push(value);
                }
                field = Some((key.trim_matches(PY_WHITESPACE).to_lowercase(), lines));
            } else if line.starts_with(' ') || line.starts_with('\t') {
                if let Some((_, lines)) = field.as_mut() {
                    lines.push(line);
                }
            }
        }
        if let Some((key, lines)) = field {
            plan.set(&key, &lines);
        }
        plan
    }

    fn set(&mut self, key: &str, lines: &[&str]) {
        if lines.is_empty() {
            return;
        }
        let value = lines.join("\n");
        let text = || value.trim_matches(PY_WHITESPACE).to_string();
        match key {
            "bpm" => self.bpm = Some(Value::parse(&value)),
            "caption" => self.caption = Some(join_caption(&value)),
            "duration" => self.duration = Some(Value::parse(&value)),
            "genres" => self.genres = Some(text()),
            "keyscale" => self.keyscale = Some(text()),
            "language" => self.language = Some(text()),
            "timesignature" => self.timesignature = Some(text()),
            _ => {}
        }
    }

    /// The chain of thought phase 2 is prompted with: `<think>\n{yaml}\n</think>`, with the keys
    /// bpm, caption, duration, keyscale, language, timesignature in that (sorted) order. A time
    /// signature `N/4` is written as `N`, and text of digits as a number.
    pub fn chain_of_thought(&self) -> String {
        let mut yaml = String::new();
        let mut entry = |key: &str, value: YamlValue| {
            if !yaml.is_empty() {
                yaml.push('\n');
            }
            write_entry(&mut yaml, key, &value);
        };
        let number = |v: &Value| match v {
            Value::Int(i) => YamlValue::Int(*i),
            Value::Text(t) => YamlValue::from_text(t),
        };
        if let Some(v) = &self.bpm {
            entry("bpm", number(v));
        }
        if let Some(v) = &self.caption {
            entry("caption", YamlValue::from_text(v));
        }
        if let Some(v) = &self.duration {
            entry("duration", number(v));
        }
        if let Some(v) = &self.keyscale {
            entry("keyscale", YamlValue::from_text(v));
        }
        if let Some(v) = &self.language {
            entry("language", YamlValue::from_text(v));
        }
        if let Some(v) = &self.timesignature {
            let v = v.strip_suffix("/4").map_or(v.as_str(), |n| n.split('/').next().unwrap_or(n));
            entry("timesignature", YamlValue::from_text(v));
        }
        format!("<think>\n{yaml}\n</think>")
    }
}

/// Python's `str.strip()` set for the ASCII range (what the caption and field values meet).
const PY_WHITESPACE: &[char] = &[' ', '\t', '\n', '\r', '\x0b', '\x0c'];

/// Upstream `postprocess_caption`: each line stripped, empty ones dropped, joined with a space.
fn join_caption(value: &str) -> String {
    value.split('\n').map(|l| l.trim_matches(PY_WHITESPACE)).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

enum YamlValue {
    Int(i64),
    Str(String),
}

impl YamlValue {
    /// Text as upstream passes it to PyYAML: a string of ASCII digits becomes an int.
    fn from_text(text: &str) -> Self {
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            if let Ok(v) = text.parse() {
                return YamlValue::Int(v);
            }
        }
        YamlValue::Str(text.to_string())
    }
}

/// PyYAML's default `best_width`.
const BEST_WIDTH: usize = 80;
/// Where a folded value continues: a top-level mapping's value indent.
const CONTINUATION_INDENT: usize = 2;

fn write_entry(out: &mut String, key: &str, value: &YamlValue) {
    out.push_str(key);
    out.push(':');
    let mut column = key.chars().count() + 1;
    match value {
        YamlValue::Int(v) => {
            let _ = write!(out, " {v}");
        }
        YamlValue::Str(s) => match scalar_style(s) {
            Style::Plain => {
                out.push(' ');
                column += 1;
                write_folded(out, &mut column, s, false);
            }
            Style::SingleQuoted => {
                out.push_str(" '");
                column += 2;
                write_folded(out, &mut column, s, true);
                out.push('\'');
            }
            Style::DoubleQuoted => {
                out.push(' ');
                out.push_str(&serde_json::to_string(s).unwrap_or_default());
            }
        },
    }
}

/// PyYAML's plain and single-quoted writers: a single space between words becomes a line break
/// (and the continuation indent) once the column has passed the best width. In single quotes a
/// quote is doubled, and no break is made at the value's first or last character.
fn write_folded(out: &mut String, column: &mut usize, text: &str, quoted: bool) {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' {
            let run = chars[i..].iter().take_while(|&&c| c == ' ').count();
            let at_edge = quoted && (i == 0 || i + run == chars.len());
            if run == 1 && *column > BEST_WIDTH && !at_edge {
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', CONTINUATION_INDENT));
                *column = CONTINUATION_INDENT;
            } else {
                out.extend(std::iter::repeat_n(' ', run));
                *column += run;
            }
            i += run;
        } else {
            if quoted && chars[i] == '\'' {
                out.push_str("''");
                *column += 2;
            } else {
                out.push(chars[i]);
                *column += 1;
            }
            i += 1;
        }
    }
}

enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
}

/// PyYAML's choice for a string value in block context (`Emitter.analyze_scalar` and
/// `choose_scalar_style`), for single-line text.
fn scalar_style(s: &str) -> Style {
    let chars: Vec<char> = s.chars().collect();
    let printable = |c: char| {
        matches!(c, '\x20'..='\x7e' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
            && c != '\u{feff}'
    };
    if chars.iter().any(|&c| !printable(c)) {
        return Style::DoubleQuoted;
    }
    if chars.is_empty() || s.starts_with("---") || s.starts_with("...") {
        return Style::SingleQuoted;
    }
    let mut block_indicator = false;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_space = chars.get(i + 1).is_none_or(|&n| n == ' ');
        let preceded_by_space = i == 0 || chars[i - 1] == ' ';
        block_indicator |= if i == 0 {
            "#,[]{}&*!|>'\"%@`".contains(c) || (matches!(c, '?' | ':' | '-') && followed_by_space)
        } else {
            (c == ':' && followed_by_space) || (c == '#' && preceded_by_space)
        };
    }
    let edge_space = chars[0] == ' ' || chars[chars.len() - 1] == ' ';
    if block_indicator || edge_space || !resolves_to_str(s) {
        Style::SingleQuoted
    } else {
        Style::Plain
    }
}

/// Whether PyYAML's resolver reads `s`, written plain, back as a string: not a YAML 1.1 bool,
/// null, int, float, timestamp, merge key or value key.
fn resolves_to_str(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off",
        "Off", "OFF", "~", "null", "Null", "NULL", "<<", "=", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF", ".nan", ".NaN", ".NAN",
    ];
    !(WORDS.contains(&s) || yaml_int(s) || yaml_float(s) || yaml_timestamp(s))
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix(['+', '-']).unwrap_or(s)
}

fn all_of(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(allowed)
}

/// `[-+]?(0b[01_]+ | 0[0-7_]+ | 0 | [1-9][0-9_]* | 0x[0-9a-fA-F_]+ | [1-9][0-9_]*(:[0-5]?[0-9])+)`
fn yaml_int(s: &str) -> bool {
    let s = strip_sign(s);
    if let Some(b) = s.strip_prefix("0b") {
        return all_of(b, |c| matches!(c, '0' | '1' | '_'));
    }
    if let Some(x) = s.strip_prefix("0x") {
        return all_of(x, |c| c.is_ascii_hexdigit() || c == '_');
    }
    if s == "0" {
        return true;
    }
    if let Some(o) = s.strip_prefix('0') {
        return all_of(o, |c| matches!(c, '0'..='7' | '_'));
    }
    let mut parts = s.split(':');
    let head = parts.next().unwrap_or("");
    let head_ok = head.starts_with(|c: char| matches!(c, '1'..='9')) && all_of(head, |c| c.is_ascii_digit() || c == '_');
    head_ok && parts.all(sexagesimal)
}

/// `[0-5]?[0-9]`
fn sexagesimal(p: &str) -> bool {
    match p.as_bytes() {
        [d] => d.is_ascii_digit(),
        [a, b] => (b'0'..=b'5').contains(a) && b.is_ascii_digit(),
        _ => false,
    }
}

/// `[-+]?([0-9][0-9_]*)\.[0-9_]*([eE][-+][0-9]+)? | \.[0-9][0-9_]*([eE][-+][0-9]+)? |
/// [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*` (the inf/nan forms are in the word list).
fn yaml_float(s: &str) -> bool {
    let exponent_ok = |e: Option<&str>| e.is_none_or(|e| e.strip_prefix(['+', '-']).is_some_and(|d| all_of(d, |c| c.is_ascii_digit())));
    let split_exponent = |t: &str| -> (String, Option<String>) {
        match t.find(['e', 'E']) {
            Some(at) => (t[..at].to_string(), Some(t[at + 1..].to_string())),
            None => (t.to_string(), None),
        }
    };
    let digits_ = |t: &str| t.chars().all(|c| c.is_ascii_digit() || c == '_');
    if let Some(rest) = s.strip_prefix('.') {
        let (mantissa, exp) = split_exponent(rest);
        return mantissa.starts_with(|c: char| c.is_ascii_digit()) && digits_(&mantissa) && exponent_ok(exp.as_deref());
    }
    let body = strip_sign(s);
    let Some((whole, fraction)) = body.split_once('.') else { return false };
    if !whole.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let mut groups = whole.split(':');
    let first = groups.next().unwrap_or("");
    let rest: Vec<&str> = groups.collect();
    if !digits_(first) {
        return false;
    }
    if !rest.is_empty() {
        return rest.iter().all(|g| sexagesimal(g)) && digits_(fraction);
    }
    let (fraction, exp) = split_exponent(fraction);
    digits_(&fraction) && exponent_ok(exp.as_deref())
}

/// `YYYY-M?M-D?D` with an optional time part (only the date forms matter for a caption).
fn yaml_timestamp(s: &str) -> bool {
    let date_len = {
        let b = s.as_bytes();
        if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
            return false;
        }
        let month = b[5..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=2).contains(&month) || b.get(5 + month) != Some(&b'-') {
            return false;
        }
        let day = b[6 + month..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=2).contains(&day) {
            return false;
        }
        6 + month + day
    };
    // Anything after the date must be the time part, which starts with T, t or blanks.
    date_len == s.len() || s[date_len..].starts_with(['T', 't', ' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_of_thought_reads_back_with_its_caption_rejoined() {
        let text = "<think>\nbpm: 92\ncaption: A warm lofi groove with dusty drums and a mellow Rhodes piano that\n  drifts over a slow bassline.\nduration: 30\nkeyscale: F# minor\nlanguage: en\ntimesignature: 4\n</think>\n\n<|audio_code_5|>";
        let plan = Plan::parse(text);
        assert_eq!(plan.bpm, Some(Value::Int(92)));
        assert_eq!(plan.duration, Some(Value::Int(30)));
        assert_eq!(plan.keyscale.as_deref(), Some("F# minor"));
        assert_eq!(plan.timesignature.as_deref(), Some("4"));
        assert_eq!(
            plan.caption.as_deref(),
            Some("A warm lofi groove with dusty drums and a mellow Rhodes piano that drifts over a slow bassline.")
        );
        assert!(plan.has_all_metas());
        assert_eq!(Plan::parse("bpm: fast\n").bpm, Some(Value::Text("fast".into())));
    }

    #[test]
    fn the_chain_of_thought_is_written_as_pyyaml_dumps_it() {
        let plan = Plan {
            bpm: Some(Value::Int(120)),
            duration: Some(Value::Int(30)),
            keyscale: Some("B♭ minor".into()),
            language: Some("no".into()),
            timesignature: Some("3/4".into()),
            caption: Some(format!("{} {} {} d e", "a".repeat(30), "b".repeat(30), "c".repeat(30))),
            genres: None,
        };
        let expected = format!(
            "<think>\nbpm: 120\ncaption: {} {} {}\n  d e\nduration: 30\nkeyscale: B♭ minor\nlanguage: 'no'\ntimesignature: 3\n</think>",
            "a".repeat(30),
            "b".repeat(30),
            "c".repeat(30)
        );
        assert_eq!(plan.chain_of_thought(), expected);
        for (s, quoted) in [("a: b", true), ("x #y", true), ("1.5", true), ("120", false), ("2024-01-01", true), ("1e3", false), ("a,b", false), ("-x", false), ("- x", true), ("it's", false)] {
            let mut out = String::new();
            write_entry(&mut out, "caption", &YamlValue::from_text(s));
            assert_eq!(out.contains('\''), quoted || s.contains('\''), "{s}: {out}");
        }
    }
}
