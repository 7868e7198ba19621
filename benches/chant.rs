//! Cost of one built-in chant line: the path every request takes when no
//! language model is configured, and the fallback when one fails.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kakigori::chant::generator::Generator;

fn one_line(c: &mut Criterion) {
    let mut generator = Generator::new(1);
    let mut menu = 0;
    c.bench_function("chant_generator_line", |b| {
        b.iter(|| {
            menu = (menu + 1) % 4;
            black_box(generator.line(black_box(menu)))
        })
    });
}

criterion_group!(benches, one_line);
criterion_main!(benches);
