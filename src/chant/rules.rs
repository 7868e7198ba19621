//! The shape every chant line must have (SPEC.md §4), checked in one place so the
//! built-in generator and the language-model backend are held to the same rules:
//! a line that passes here can be shown to a guest, whoever wrote it.

use std::fmt;

use crate::menu::{self, MenuIndex, MENU};

/// Fewest Unicode scalar values in a line, closing mark included.
pub const MIN_CHARS: usize = 20;
/// Most Unicode scalar values in a line, closing mark included.
pub const MAX_CHARS: usize = 40;

/// Last kana of an imperative: the え-row of a godan verb (解き放て, 砕け散れ,
/// ひれ伏せ) or the よ/ろ of an ichidan or する verb (目覚めよ, 覚醒せよ, 吹き荒れろ).
/// A line ending in anything else (…がいい, …行かん, …ブレイク) is no command.
const IMPERATIVE_ENDINGS: &str = "えけげせぜてでねへべぺめれよろ";

/// The first rule a line breaks, in the order [`check_line`] tests them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleViolation {
    /// A newline or other line separator: a chant is one line.
    LineBreak,
    /// Any ASCII character: letters, digits, spaces and ASCII punctuation.
    Ascii(char),
    /// A pictograph, emoji modifier or joiner.
    Emoji(char),
    /// A quotation mark or bracket of any width.
    QuoteOrBracket(char),
    /// Any other character outside kanji, kana, `ー`, `、`, `。` and `！`.
    Disallowed(char),
    /// Fewer than [`MIN_CHARS`] characters.
    TooShort { chars: usize },
    /// More than [`MAX_CHARS`] characters.
    TooLong { chars: usize },
    /// The last character is not `。` or `！`.
    NoClosingMark,
    /// A `。` or `！` before the last character: more than one sentence.
    SeveralSentences,
    /// The character before the closing mark is not kana.
    NotKanaBeforeMark(char),
    /// The final kana cannot end an imperative verb.
    NotImperative(char),
    /// The item's event word (技育祭, …) is missing.
    MissingEvent(&'static str),
    /// The item's flavour word (ストロベリー, …) is missing.
    MissingFlavour(&'static str),
    /// Another item's event or flavour word, which would name the wrong ice.
    OtherItemWord(&'static str),
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineBreak => write!(f, "contains a line break"),
            Self::Ascii(c) => write!(f, "contains ASCII character {c:?}"),
            Self::Emoji(c) => write!(f, "contains emoji {c:?}"),
            Self::QuoteOrBracket(c) => write!(f, "contains quote or bracket {c:?}"),
            Self::Disallowed(c) => {
                write!(
                    f,
                    "contains {c:?}, not kanji, kana, ー, 、 or a closing mark"
                )
            }
            Self::TooShort { chars } => {
                write!(f, "has {chars} characters, fewer than {MIN_CHARS}")
            }
            Self::TooLong { chars } => write!(f, "has {chars} characters, more than {MAX_CHARS}"),
            Self::NoClosingMark => write!(f, "does not end with 。 or ！"),
            Self::SeveralSentences => write!(f, "has 。 or ！ before the end"),
            Self::NotKanaBeforeMark(c) => write!(f, "has {c:?} before the closing mark, not kana"),
            Self::NotImperative(c) => {
                write!(f, "ends in {c:?}, not the kana of an imperative verb")
            }
            Self::MissingEvent(word) => write!(f, "does not mention the event {word}"),
            Self::MissingFlavour(word) => write!(f, "does not mention the flavour {word}"),
            Self::OtherItemWord(word) => {
                write!(f, "mentions {word}, which belongs to another item")
            }
        }
    }
}

impl std::error::Error for RuleViolation {}

/// Accepts `line` as a chant for the item at `menu`, or names the first rule it
/// breaks. Characters are checked first so that a model's multi-line or
/// English answer is reported as such rather than as merely too long.
pub fn check_line(line: &str, menu: MenuIndex) -> Result<(), RuleViolation> {
    let mut chars: usize = 0;
    for c in line.chars() {
        check_char(c)?;
        chars += 1;
    }
    if chars < MIN_CHARS {
        return Err(RuleViolation::TooShort { chars });
    }
    if chars > MAX_CHARS {
        return Err(RuleViolation::TooLong { chars });
    }

    let mut from_end = line.chars().rev();
    let (Some(last), Some(before_last)) = (from_end.next(), from_end.next()) else {
        return Err(RuleViolation::TooShort { chars });
    };
    if !is_closing_mark(last) {
        return Err(RuleViolation::NoClosingMark);
    }
    if from_end.any(is_closing_mark) || is_closing_mark(before_last) {
        return Err(RuleViolation::SeveralSentences);
    }
    if !is_hiragana(before_last) && !is_katakana(before_last) {
        return Err(RuleViolation::NotKanaBeforeMark(before_last));
    }
    if !IMPERATIVE_ENDINGS.contains(before_last) {
        return Err(RuleViolation::NotImperative(before_last));
    }

    let item = menu::item(menu);
    if !line.contains(item.event) {
        return Err(RuleViolation::MissingEvent(item.event));
    }
    if !line.contains(item.flavour) {
        return Err(RuleViolation::MissingFlavour(item.flavour));
    }
    for other in MENU.iter().filter(|other| other.id != item.id) {
        for word in [other.event, other.flavour] {
            if line.contains(word) {
                return Err(RuleViolation::OtherItemWord(word));
            }
        }
    }
    Ok(())
}

/// Character classes, most specific complaint first.
fn check_char(c: char) -> Result<(), RuleViolation> {
    if matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    ) {
        Err(RuleViolation::LineBreak)
    } else if c.is_ascii() {
        Err(RuleViolation::Ascii(c))
    } else if is_emoji(c) {
        Err(RuleViolation::Emoji(c))
    } else if is_quote_or_bracket(c) {
        Err(RuleViolation::QuoteOrBracket(c))
    } else if is_kanji(c)
        || is_hiragana(c)
        || is_katakana(c)
        || matches!(c, 'ー' | '、')
        || is_closing_mark(c)
    {
        Ok(())
    } else {
        Err(RuleViolation::Disallowed(c))
    }
}

fn is_closing_mark(c: char) -> bool {
    matches!(c, '。' | '！')
}

/// CJK ideographs, their extensions and compatibility forms, and `々`, which
/// repeats the kanji before it (星々) and is written as part of the word.
fn is_kanji(c: char) -> bool {
    matches!(c,
        '\u{3005}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{323AF}')
}

/// ぁ to ゖ; the iteration marks ゝゞ are left out as too archaic for a menu.
fn is_hiragana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{3096}')
}

/// ァ to ヺ; the middle dot ・ and iteration marks are punctuation, not kana.
fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30A1}'..='\u{30FA}')
}

/// Pictographic blocks plus the invisible pieces emoji sequences are made of.
fn is_emoji(c: char) -> bool {
    matches!(c,
        '\u{200D}'                      // zero-width joiner
        | '\u{20E3}'                    // combining keycap
        | '\u{2190}'..='\u{21FF}'       // arrows
        | '\u{2300}'..='\u{23FF}'       // technical symbols (⌚, ⏰)
        | '\u{2460}'..='\u{24FF}'       // enclosed alphanumerics (Ⓜ)
        | '\u{25A0}'..='\u{27BF}'       // shapes, symbols, dingbats (☀, ✨, ❄)
        | '\u{2900}'..='\u{297F}'       // supplemental arrows
        | '\u{2B00}'..='\u{2BFF}'       // misc symbols and arrows (⭐)
        | '\u{3030}' | '\u{303D}'       // wavy dash, part alternation mark
        | '\u{3297}' | '\u{3299}'       // circled ideographs used as emoji
        | '\u{FE00}'..='\u{FE0F}'       // variation selectors
        | '\u{1F000}'..='\u{1FAFF}'     // emoji and pictographs
        | '\u{E0020}'..='\u{E007F}') // tag characters (flag sequences)
}

/// Full-width, Japanese and typographic quotes and brackets; the ASCII ones are
/// already rejected as ASCII.
fn is_quote_or_bracket(c: char) -> bool {
    matches!(
        c,
        '「' | '」'
            | '『'
            | '』'
            | '（'
            | '）'
            | '［'
            | '］'
            | '｛'
            | '｝'
            | '【'
            | '】'
            | '〔'
            | '〕'
            | '〈'
            | '〉'
            | '《'
            | '》'
            | '〖'
            | '〗'
            | '〘'
            | '〙'
            | '〚'
            | '〛'
            | '｢'
            | '｣'
            | '＂'
            | '＇'
            | '〝'
            | '〞'
            | '〟'
            | '\u{2018}'
            ..='\u{201F}'      // ‘ ’ ‚ ‛ “ ” „ ‟
        | '\u{2039}' | '\u{203A}' | '«' | '»'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAI: MenuIndex = 0;
    const HAKU: MenuIndex = 1;
    const TEN: MenuIndex = 2;
    const CAMP: MenuIndex = 3;

    fn rejects(line: &str, menu: MenuIndex) -> RuleViolation {
        match check_line(line, menu) {
            Ok(()) => panic!("accepted {line:?}"),
            Err(violation) => violation,
        }
    }

    #[test]
    fn accepts_a_well_formed_line_for_every_item() {
        for (line, menu) in [
            ("技育祭のストロベリーよ、紅き氷となりて目覚めよ！", SAI),
            ("深淵の封印を解き、技育博にメロンの氷雨を降らせよ。", HAKU),
            ("蒼き氷竜よ、技育展をブルーハワイの色に染め上げよ！", TEN),
            ("技育キャンプに集いし者どもよ、オレンジの氷に跪け！", CAMP),
        ] {
            assert_eq!(check_line(line, menu), Ok(()), "{line}");
        }
    }

    #[test]
    fn accepts_the_iteration_mark_as_part_of_a_kanji_word() {
        assert_eq!(
            check_line("星々よ、技育祭のストロベリーを我が手に授けよ！", SAI),
            Ok(())
        );
    }

    #[test]
    fn rejects_ascii() {
        assert_eq!(
            rejects("技育祭のストロベリーよ、Ice となりて目覚めよ！", SAI),
            RuleViolation::Ascii('I')
        );
    }

    #[test]
    fn rejects_emoji() {
        assert_eq!(
            rejects("技育祭のストロベリーよ、紅き氷🍧となりて目覚めよ！", SAI),
            RuleViolation::Emoji('🍧')
        );
        assert_eq!(
            rejects("技育祭のストロベリーよ、紅き氷❄となりて目覚めよ！", SAI),
            RuleViolation::Emoji('❄')
        );
    }

    #[test]
    fn rejects_quotes_and_brackets() {
        assert_eq!(
            rejects("「技育祭のストロベリーよ、紅き氷となりて目覚めよ！」", SAI),
            RuleViolation::QuoteOrBracket('「')
        );
        assert_eq!(
            rejects("技育祭の“ストロベリー”よ、紅き氷となりて目覚めよ！", SAI),
            RuleViolation::QuoteOrBracket('“')
        );
    }

    #[test]
    fn rejects_line_breaks() {
        assert_eq!(
            rejects("技育祭のストロベリーよ、\n紅き氷となりて目覚めよ！", SAI),
            RuleViolation::LineBreak
        );
    }

    #[test]
    fn rejects_other_characters() {
        assert_eq!(
            rejects("技育祭のストロベリーよ、紅き氷となりて目覚めよ？", SAI),
            RuleViolation::Disallowed('？')
        );
        assert_eq!(
            rejects("技育祭のストロベリーよ　紅き氷となりて目覚めよ！", SAI),
            RuleViolation::Disallowed('\u{3000}')
        );
    }

    #[test]
    fn rejects_lengths_outside_the_bounds_and_accepts_both_edges() {
        let nineteen = "技育博のメロンよ、我が器に今降臨せよ！";
        assert_eq!(nineteen.chars().count(), MIN_CHARS - 1);
        assert_eq!(
            rejects(nineteen, HAKU),
            RuleViolation::TooShort { chars: 19 }
        );
        let twenty = "技育博のメロンよ、我が器に疾く降臨せよ！";
        assert_eq!(twenty.chars().count(), MIN_CHARS);
        assert_eq!(check_line(twenty, HAKU), Ok(()));

        let forty =
            "技育キャンプのオレンジよ、古より続く封印を解きし灼熱の氷となりて今こそ目覚めよ！";
        assert_eq!(forty.chars().count(), MAX_CHARS);
        assert_eq!(check_line(forty, CAMP), Ok(()));
        let too_long =
            "技育キャンプのオレンジよ、古より続く封印を解きし灼熱なる氷となりて今こそ目覚めよ！";
        assert_eq!(
            rejects(too_long, CAMP),
            RuleViolation::TooLong { chars: 41 }
        );
    }

    #[test]
    fn rejects_missing_closing_mark() {
        assert_eq!(
            rejects("技育祭のストロベリーよ、紅き氷となりて目覚めよ", SAI),
            RuleViolation::NoClosingMark
        );
        assert_eq!(
            rejects("技育祭のストロベリーよ、紅き氷となりて目覚めよ、", SAI),
            RuleViolation::NoClosingMark
        );
    }

    #[test]
    fn rejects_two_sentences() {
        assert_eq!(
            rejects("技育祭のストロベリーよ。紅き氷となりて目覚めよ。", SAI),
            RuleViolation::SeveralSentences
        );
        assert_eq!(
            rejects("技育祭のストロベリーよ、紅き氷となりて目覚めよ！！", SAI),
            RuleViolation::SeveralSentences
        );
    }

    #[test]
    fn rejects_non_kana_before_the_mark() {
        assert_eq!(
            rejects("技育祭のストロベリーよ、紅き氷となりて我が手に降臨！", SAI),
            RuleViolation::NotKanaBeforeMark('臨')
        );
        assert_eq!(
            rejects(
                "技育祭のストロベリーよ、紅き氷となりて我が手に降臨ー！",
                SAI
            ),
            RuleViolation::NotKanaBeforeMark('ー')
        );
    }

    #[test]
    fn rejects_endings_that_are_no_command() {
        assert_eq!(
            rejects(
                "技育祭のストロベリーよ、紅き氷となりて我が手に来たるがいい！",
                SAI
            ),
            RuleViolation::NotImperative('い')
        );
        assert_eq!(
            rejects("技育博のメロンよ、氷の刃となりて全てをブレイク！", HAKU),
            RuleViolation::NotImperative('ク')
        );
    }

    #[test]
    fn rejects_missing_event() {
        assert_eq!(
            rejects("祭りのストロベリーよ、紅き氷となりて目覚めよ！", SAI),
            RuleViolation::MissingEvent("技育祭")
        );
    }

    #[test]
    fn rejects_missing_flavour() {
        assert_eq!(
            rejects("技育祭のいちごよ、紅き氷となりて今ここに目覚めよ！", SAI),
            RuleViolation::MissingFlavour("ストロベリー")
        );
    }

    #[test]
    fn rejects_another_items_words() {
        assert_eq!(
            rejects("技育祭のストロベリーよ、メロンを従えて目覚めよ！", SAI),
            RuleViolation::OtherItemWord("メロン")
        );
        assert_eq!(
            rejects("技育展のブルーハワイよ、技育祭の空に目覚めよ！", TEN),
            RuleViolation::OtherItemWord("技育祭")
        );
    }

    #[test]
    fn every_violation_explains_itself() {
        let violation = rejects("技育祭のストロベリーよ、Ice となりて目覚めよ！", SAI);
        assert_eq!(violation.to_string(), "contains ASCII character 'I'");
        assert_eq!(
            RuleViolation::MissingFlavour("メロン").to_string(),
            "does not mention the flavour メロン"
        );
    }
}
