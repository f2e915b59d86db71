//! The reuse rule, against a model: an entry freed is handed out again only
//! after the interrupt entry cache invalidation covering its old contents
//! completed and the table saw it complete; and whatever the order of
//! operations, every live handle's MSI delivers what it was programmed
//! with on the software VT-d, whose cache really is stale until
//! invalidated (the hook holds freed blocks' invalidations back at will).

mod common;

use common::Bed;
use irq_remap::{Error, Handle, PENDING};
use proptest::prelude::*;
use vtd_emu::Delivered;
use vtd_regs::SourceId;
use vtd_regs::irq::{Interrupt, InterruptMode};

/// What the model knows of each entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Free,
    Used,
    /// Freed; its invalidation is held back by the hook.
    Held,
    /// Freed; its invalidation completed, the table has not reclaimed it.
    Done,
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u8),
    Release(usize),
    Complete,
    Reclaim,
    Msi(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4).prop_map(Op::Alloc),
        3 => any::<usize>().prop_map(Op::Release),
        1 => Just(Op::Complete),
        2 => Just(Op::Reclaim),
        2 => any::<usize>().prop_map(Op::Msi),
    ]
}

const DEV: SourceId = SourceId::from_raw(0x0100);
const ENTRIES: usize = 64;

/// The model's first-fit aligned block of `2^order` free entries.
fn first_fit(model: &[State], order: u8) -> Option<usize> {
    let n = 1usize << order;
    (0..ENTRIES).step_by(n).find(|&i| model[i..i + n].iter().all(|s| *s == State::Free))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn entries_are_reused_only_after_their_invalidation(ops in prop::collection::vec(op(), 1..120)) {
        let mut bed: Bed<1> = Bed::new(InterruptMode::XApic);
        let mut model = [State::Free; ENTRIES];
        let mut live: Vec<(Handle, Interrupt)> = Vec::new();
        let mut next_vector = 0x20u8;
        for op in ops {
            match op {
                Op::Alloc(order) => {
                    // Allocation happens with the held invalidations still held.
                    let expect = first_fit(&model, order);
                    match bed.table.allocate(1 << order) {
                        Ok(h) => {
                            prop_assert_eq!(Some(usize::from(h.index())), expect);
                            for s in &mut model[usize::from(h.index())..][..1 << order] {
                                prop_assert_eq!(*s, State::Free);
                                *s = State::Used;
                            }
                            // Programming waits for its invalidation: let everything through.
                            bed.hold(false);
                            for s in model.iter_mut().filter(|s| **s == State::Held) {
                                *s = State::Done;
                            }
                            next_vector = next_vector.wrapping_add(1).max(0x20);
                            let irq = Interrupt::fixed(u32::from(next_vector % 8), next_vector);
                            for sub in 0..h.count() as u16 {
                                bed.table.program_device(&mut bed.inv, &h, sub, DEV, irq).unwrap();
                            }
                            live.push((h, irq));
                        }
                        Err(Error::Full) => prop_assert_eq!(expect, None),
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
                Op::Release(k) if !live.is_empty() => {
                    if bed.table.pending() == PENDING {
                        // Retiring one more waits for the oldest and then
                        // reclaims every completed block, as `reclaim` does.
                        bed.hold(false);
                        for s in model.iter_mut().filter(|s| **s != State::Used) {
                            *s = State::Free;
                        }
                    }
                    let (h, _) = live.swap_remove(k % live.len());
                    let (index, count) = (usize::from(h.index()), h.count() as usize);
                    bed.hold(true);
                    bed.table.release(&mut bed.inv, h).unwrap();
                    for s in &mut model[index..index + count] {
                        *s = State::Held;
                    }
                }
                Op::Release(_) => {}
                Op::Complete => {
                    bed.hold(false);
                    for s in model.iter_mut().filter(|s| **s == State::Held) {
                        *s = State::Done;
                    }
                }
                Op::Reclaim => {
                    bed.table.reclaim(&mut bed.inv).unwrap();
                    // Only completed invalidations give entries back. Every
                    // held one was posted after the last completion, so the
                    // completed ones are all ahead of it in the table's FIFO.
                    for s in model.iter_mut().filter(|s| **s == State::Done) {
                        *s = State::Free;
                    }
                }
                Op::Msi(k) if !live.is_empty() => {
                    let (h, irq) = &live[k % live.len()];
                    for sub in 0..h.count() as u16 {
                        let got = bed.emu.remap_interrupt(DEV, h.msi(sub));
                        let index = h.index() + sub;
                        prop_assert_eq!(got, Ok(Delivered::Remapped { index, interrupt: *irq }));
                    }
                }
                Op::Msi(_) => {}
            }
            let used = model.iter().filter(|s| **s != State::Free).count() as u32;
            prop_assert_eq!(bed.table.in_use(), used);
        }
    }
}
