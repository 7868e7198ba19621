//! The built-in chant writer: curated sentence templates whose slots are filled
//! from hand-written phrase tables. It needs no network, costs microseconds and
//! is the line every guest gets when no language model is configured or the
//! model fails, so every combination it can produce is a valid line (the tests
//! enumerate them all against [`super::rules::check_line`]).
//!
//! Each template is one grammatical sentence: a vocative or opening clause, the
//! event and flavour words woven in with a particle, and a strong imperative
//! at the end. Phrases that only make sense together (a place and what happens
//! there, an object and the verb that summons it) are kept in one table entry,
//! so random choice cannot produce a clash such as a glacier that "falls".

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::menu::{self, MenuIndex, MENU};

/// One slot of a template.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// Fixed text.
    Text(&'static str),
    /// The item's event word, verbatim (技育祭).
    Event,
    /// The item's flavour word, verbatim (ストロベリー).
    Flavour,
    /// An attributive colour phrase matching the flavour (紅き, 蒼き, …).
    Colour,
    /// One phrase from the table, uniformly.
    Pick(&'static [&'static str]),
}

use Part::{Colour, Event, Flavour, Pick, Text};

/// The closing mark; mostly an exclamation, since a chant is shouted.
const MARK: &[&str] = &["！", "！", "！", "。"];

/// Ice that can be addressed, summoned or worshipped; two characters each so
/// the templates' length bounds hold for every item.
const ICE: &[&str] = &[
    "氷晶", "結晶", "吹雪", "雪華", "氷刃", "冷気", "氷竜", "氷華",
];

/// Ice that falls, shines, dances or blooms, for commands about where it goes.
const FALLING_ICE: &[&str] = &["氷晶", "結晶", "雪華", "氷華", "粉雪", "氷片"];

/// Colour phrases per flavour, so that strawberry ice is never "blue".
const PALETTES: &[(&str, &[&str])] = &[
    (
        "ストロベリー",
        &["紅き", "真紅なる", "紅蓮の", "緋色に輝く", "薔薇色の"],
    ),
    (
        "メロン",
        &["碧き", "翠なる", "翡翠の", "深緑に輝く", "若葉色の"],
    ),
    (
        "ブルーハワイ",
        &["蒼き", "紺碧なる", "群青の", "蒼穹に輝く", "瑠璃色の"],
    ),
    (
        "オレンジ",
        &["灼熱の", "琥珀の", "陽炎の", "黄昏に輝く", "夕映えの"],
    ),
];

/// For a flavour added to the menu before it gets its own palette: colours
/// that suit any ice.
const NEUTRAL_PALETTE: &[&str] = &["白銀の", "純白の", "透き通る", "清冽なる", "凍てつく"];

/// How the flavour word binds to the ice it names: "of", "born of", "dwelling
/// in", "clad in".
const FLAVOUR_BOND: &[&str] = &["の", "より生まれし", "に宿りし", "を纏いし"];

/// A place at the event and an intransitive command fitting that place and
/// any [`FALLING_ICE`].
const PLACE_AND_RISE: &[&str] = &[
    "夜空に煌めけ",
    "大地に降り注げ",
    "空に舞い踊れ",
    "祭壇に降臨せよ",
    "戦場に吹き荒れろ",
    "宴に咲き誇れ",
    "天空に舞い上がれ",
    "舞台に顕現せよ",
    "空に砕け散れ",
    "地に目覚めよ",
];

/// Powers of ice called upon by name; none names a colour, so they suit every
/// flavour.
const ICE_POWERS: &[&str] = &[
    "深淵に眠りし氷の王",
    "我が右腕に宿りし冷気",
    "天を裂く白銀の吹雪",
    "星霜を超えし氷の精霊",
    "絶対零度の支配者",
    "氷結の女神",
    "封印されし永久凍土",
    "時の狭間に眠る霜の竜",
    "凍てつく深淵の覇者",
    "白銀の世界を統べる者",
    "古の盟約に従う者",
];

/// Links the event word to the flavour word that follows it.
const EVENT_TO_FLAVOUR: &[&str] = &["の", "に捧ぐ", "を彩る"];

/// What of the flavour is summoned, with its object particle.
const FLAVOUR_OBJECT: &[&str] = &["を", "の氷を", "の結晶を", "の雪華を"];

/// Transitive commands taking the object before them.
const SUMMON: &[&str] = &[
    "今ここに顕現させよ",
    "我が手に召喚せよ",
    "今こそ解き放て",
    "この器に降臨させよ",
    "我が前に示せ",
    "高らかに讃えよ",
    "天高く掲げよ",
    "我に授けよ",
    "呼び覚ませ",
    "解放せよ",
];

/// How a crowd came to the event.
const GATHERED: &[&str] = &["に集いし", "に挑む", "を駆ける", "に導かれし"];

/// The crowd addressed, with the vocative よ.
const CROWD: &[&str] = &[
    "者どもよ",
    "同志たちよ",
    "勇者たちよ",
    "戦士たちよ",
    "眷属たちよ",
];

/// Members of the event's people, for 聞け、…の民よ.
const FOLK: &[&str] = &["民", "同胞", "勇者", "子ら", "戦士"];

/// Commands to a crowd about the ice named before them, particle included.
const WORSHIP: &[&str] = &[
    "に跪け",
    "の前にひれ伏せ",
    "に酔いしれよ",
    "と契約せよ",
    "を讃えよ",
    "をその身に刻め",
    "を崇めよ",
    "を求めよ",
    "に刮目せよ",
];

/// Commands to the ice addressed just before, fitting any kind of ice.
const AWAKEN: &[&str] = &[
    "目覚めよ",
    "覚醒せよ",
    "顕現せよ",
    "降臨せよ",
    "我が器に宿れ",
    "今こそ目覚めよ",
    "舞い降りよ",
    "我が前に現れよ",
    "その力を示せ",
];

/// Under whose authority the ice is called, after the event word.
const COVENANT: &[&str] = &[
    "の盟約に従い、",
    "の名のもとに、",
    "の星が輝く刻、",
    "に捧ぐ誓いと共に、",
];

/// A seal broken before the summoning.
const SEAL_BROKEN: &[&str] = &[
    "深淵の封印を解き",
    "永劫の封印を破り",
    "禁断の扉を開き",
    "氷獄の鎖を断ち切り",
    "古の結界を砕き",
    "星々の契約を結び",
    "凍てつく魔導書を紐解き",
];

/// What of the flavour is called down on the event, and how.
const ICE_CALLED: &[&str] = &[
    "の雪華を降らせよ",
    "の氷雨を降らせよ",
    "の吹雪を呼び寄せよ",
    "の冷気を解き放て",
    "の氷晶を顕現させよ",
    "の氷竜を召喚せよ",
    "の奇跡を起こせ",
    "の嵐を巻き起こせ",
];

/// The hour has come.
const HOUR_COME: &[&str] = &[
    "時は満ちた",
    "刻は来た",
    "星辰は揃った",
    "封印は解かれた",
    "約束の刻は来た",
];

/// The power the flavour is asked to show.
const HIDDEN_POWER: &[&str] = &[
    "その真の力",
    "秘めし魔力",
    "眠れる力",
    "禁断の冷気",
    "凍てつく魂",
];

/// How that power is to be shown, particle included.
const REVEAL: &[&str] = &[
    "を解き放て",
    "を示せ",
    "を見せよ",
    "を解放せよ",
    "を我に捧げよ",
    "を覚醒させよ",
];

/// How the event is to be covered in the flavour.
const DYE: &[&str] = &[
    "で染め上げよ",
    "の色に染め上げよ",
    "の輝きで満たせ",
    "の雪で包み込め",
    "の氷で凍てつかせよ",
    "の光で照らし出せ",
];

/// The sentence shapes, chosen uniformly; one per line, each under an
/// example of what it writes.
#[rustfmt::skip]
const TEMPLATES: &[&[Part]] = &[
    // ストロベリーより生まれし紅き氷晶よ、技育祭の夜空に煌めけ！
    &[Flavour, Pick(FLAVOUR_BOND), Colour, Pick(FALLING_ICE), Text("よ、"), Event, Text("の"), Pick(PLACE_AND_RISE), Pick(MARK)],
    // 絶対零度の支配者よ、技育博に捧ぐメロンの結晶を我が手に召喚せよ！
    &[Pick(ICE_POWERS), Text("よ、"), Event, Pick(EVENT_TO_FLAVOUR), Flavour, Pick(FLAVOUR_OBJECT), Pick(SUMMON), Pick(MARK)],
    // 技育展に挑む勇者たちよ、ブルーハワイの紺碧なる氷竜と契約せよ！
    &[Event, Pick(GATHERED), Pick(CROWD), Text("、"), Flavour, Text("の"), Colour, Pick(ICE), Pick(WORSHIP), Pick(MARK)],
    // 我、技育博の名において命ず、メロンの氷華よ、我が器に宿れ！
    &[Text("我、"), Event, Text("の名において命ず、"), Flavour, Text("の"), Pick(ICE), Text("よ、"), Pick(AWAKEN), Pick(MARK)],
    // 技育祭の盟約に従い、ストロベリーの紅き氷竜よ、目覚めよ！
    &[Event, Pick(COVENANT), Flavour, Text("の"), Colour, Pick(ICE), Text("よ、"), Pick(AWAKEN), Pick(MARK)],
    // 深淵の封印を解き、技育博にメロンの氷雨を降らせよ！
    &[Pick(SEAL_BROKEN), Text("、"), Event, Text("に"), Flavour, Pick(ICE_CALLED), Pick(MARK)],
    // 刻は来た、技育キャンプのオレンジよ、眠れる力を解放せよ！
    &[Pick(HOUR_COME), Text("、"), Event, Text("の"), Flavour, Text("よ、"), Pick(HIDDEN_POWER), Pick(REVEAL), Pick(MARK)],
    // 陽炎の冷気よ、技育キャンプをオレンジの輝きで満たせ！
    &[Colour, Pick(ICE), Text("よ、"), Event, Text("を"), Flavour, Pick(DYE), Pick(MARK)],
    // 聞け、技育展の同胞よ、ブルーハワイの蒼き氷晶に跪け！
    &[Text("聞け、"), Event, Text("の"), Pick(FOLK), Text("よ、"), Flavour, Text("の"), Colour, Pick(ICE), Pick(WORSHIP), Pick(MARK)],
];

/// Bytes reserved for a line: 40 characters of at most three UTF-8 bytes each,
/// so building the line never reallocates.
const LINE_CAPACITY_BYTES: usize = 40 * 3;

/// Writes chant lines; one per core, seeded so tests and benchmarks repeat.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: SmallRng,
    /// Colour table of each menu item, looked up once by flavour word.
    palettes: [&'static [&'static str]; MENU.len()],
}

impl Generator {
    /// A generator whose sequence of lines is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            palettes: MENU.map(|item| palette(item.flavour)),
        }
    }

    /// A fresh chant for the item at `menu`; valid under `check_line` for
    /// every choice the tables allow.
    pub fn line(&mut self, menu: MenuIndex) -> String {
        let item = menu::item(menu);
        let template = TEMPLATES[self.rng.gen_range(0..TEMPLATES.len())];
        let mut line = String::with_capacity(LINE_CAPACITY_BYTES);
        for part in template {
            line.push_str(match *part {
                Text(text) => text,
                Event => item.event,
                Flavour => item.flavour,
                Colour => self.pick(self.palettes[usize::from(menu)]),
                Pick(choices) => self.pick(choices),
            });
        }
        line
    }

    fn pick(&mut self, choices: &'static [&'static str]) -> &'static str {
        choices[self.rng.gen_range(0..choices.len())]
    }
}

/// The colours for `flavour`, or neutral ones for a flavour without a palette.
fn palette(flavour: &str) -> &'static [&'static str] {
    PALETTES
        .iter()
        .find(|(name, _)| *name == flavour)
        .map_or(NEUTRAL_PALETTE, |(_, colours)| *colours)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::chant::rules::check_line;

    const LINES_CHECKED_PER_ITEM: usize = 10_000;
    const CALLS_FOR_VARIETY: usize = 1_000;
    const MIN_DISTINCT_PER_1000_CALLS: usize = 50;

    /// Every line a template can produce for `menu`.
    fn all_lines(template: &[Part], menu: MenuIndex, palette: &[&'static str]) -> HashSet<String> {
        let item = menu::item(menu);
        let mut lines = HashSet::from([String::new()]);
        for part in template {
            let choices: Vec<&str> = match *part {
                Text(text) => vec![text],
                Event => vec![item.event],
                Flavour => vec![item.flavour],
                Colour => palette.to_vec(),
                Pick(choices) => choices.to_vec(),
            };
            lines = lines
                .iter()
                .flat_map(|prefix| {
                    choices
                        .iter()
                        .map(move |choice| format!("{prefix}{choice}"))
                })
                .collect();
        }
        lines
    }

    #[test]
    fn every_possible_line_of_every_template_passes_the_rules() {
        for menu in 0..MENU.len() as MenuIndex {
            let mut possible = 0;
            for (number, template) in TEMPLATES.iter().enumerate() {
                for line in all_lines(template, menu, palette(menu::item(menu).flavour)) {
                    if let Err(violation) = check_line(&line, menu) {
                        panic!("template {number} for item {menu}: {line} {violation}");
                    }
                    possible += 1;
                }
            }
            assert!(possible > 10_000, "item {menu}: only {possible} lines");
        }
    }

    #[test]
    fn the_neutral_palette_fits_every_template_too() {
        for menu in 0..MENU.len() as MenuIndex {
            for template in TEMPLATES {
                for line in all_lines(template, menu, NEUTRAL_PALETTE) {
                    assert_eq!(check_line(&line, menu), Ok(()), "{line}");
                }
            }
        }
    }

    #[test]
    fn every_menu_flavour_has_its_own_palette() {
        for item in MENU {
            assert_ne!(palette(item.flavour), NEUTRAL_PALETTE, "{}", item.flavour);
        }
    }

    #[test]
    fn ten_thousand_lines_per_item_all_pass_the_rules() {
        let mut generator = Generator::new(7);
        for menu in 0..MENU.len() as MenuIndex {
            for _ in 0..LINES_CHECKED_PER_ITEM {
                let line = generator.line(menu);
                assert_eq!(check_line(&line, menu), Ok(()), "{line}");
            }
        }
    }

    #[test]
    fn a_thousand_calls_give_at_least_fifty_distinct_lines_per_item() {
        let mut generator = Generator::new(42);
        for menu in 0..MENU.len() as MenuIndex {
            let distinct: HashSet<String> = (0..CALLS_FOR_VARIETY)
                .map(|_| generator.line(menu))
                .collect();
            assert!(
                distinct.len() >= MIN_DISTINCT_PER_1000_CALLS,
                "item {menu}: {} distinct",
                distinct.len()
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_lines() {
        let mut first = Generator::new(2025);
        let mut second = Generator::new(2025);
        let mut other = Generator::new(2026);
        let from_first: Vec<String> = (0..100).map(|i| first.line(i % 4)).collect();
        let from_second: Vec<String> = (0..100).map(|i| second.line(i % 4)).collect();
        let from_other: Vec<String> = (0..100).map(|i| other.line(i % 4)).collect();
        assert_eq!(from_first, from_second);
        assert_ne!(from_first, from_other);
    }

    #[test]
    fn a_line_fits_its_reserved_capacity() {
        let mut generator = Generator::new(1);
        for menu in 0..MENU.len() as MenuIndex {
            for _ in 0..1_000 {
                assert!(generator.line(menu).len() <= LINE_CAPACITY_BYTES);
            }
        }
    }
}
