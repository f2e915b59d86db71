//! [`run`]: plays a [`Scenario`] on a [`Backend`] and observes each step.
//!
//! Before the first step, with translation still off, the device's buffer
//! is loaded from [`layout::SEED`]: slot `k` (16 bytes) holds two marker
//! words naming `k`. DMA step `k` uses slot `k`. A write is found by
//! looking for its marker in the layout's pages right after it; a read's
//! bytes stay in the buffer until the end, when translation is turned off
//! and the whole buffer is copied to [`layout::SCRATCH`], where each read
//! slot shows which data page word it fetched (or zeros).

use vtd_regs::desc::{Descriptor, RawDescriptor, WaitDesc};
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{DescriptorWidth, Fsts, GlobalBits, Iqa, Iqercd, Iqh, Iqt, QueueSize};
use vtd_regs::{
    ContextScope, Drain, Granularity, IotlbScope, Iova, Mmio, PAGE_SIZE, PhysAddr, PhysMem,
    PollBudget, RemappingUnit, UnitError,
};
use vtd_tables::Access;

use crate::diff::backend::Backend;
use crate::diff::layout::{
    self, DATA, DATA_MAGIC, MAGIC_MASK, MARK_MAGIC, PAGES, QUEUE, SCRATCH, SEED, page,
};
use crate::diff::outcome::{DmaResult, FaultSeen, Outcome};
use crate::diff::scenario::{Scenario, Step};
use crate::edu::EDU_BUFFER_SIZE;
use crate::error::{Error, Result};

/// Bytes each DMA step moves: two 8-byte words.
const SLOT: usize = 16;
/// How many DMA steps a scenario may have.
pub const MAX_DMA_STEPS: usize = EDU_BUFFER_SIZE / SLOT;
/// How many status reads a register protocol may take: both units answer
/// at once, so a command not done after this many will never be (over
/// qtest the default budget would take a minute to run out).
const POLLS: PollBudget = PollBudget::new(1000);
/// The queue's descriptor width.
const WIDTH: DescriptorWidth = DescriptorWidth::Bits128;
/// The queue's size: one page.
const QUEUE_SIZE: QueueSize = match QueueSize::from_order(0) {
    Some(size) => size,
    None => panic!("order 0 is a queue size"),
};
const PAGE: usize = PAGE_SIZE as usize;

/// The two marker words of buffer slot `k`.
fn marks(k: usize) -> [u64; 2] {
    let k = k as u64;
    [MARK_MAGIC | k << 8, MARK_MAGIC | k << 8 | 1]
}

fn words(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
}

/// What a read that left `slot` in the buffer fetched.
fn classify_read(slot: &[u8]) -> DmaResult {
    let mut w = words(slot);
    let (w0, w1) = (w.next().unwrap_or(0), w.next().unwrap_or(0));
    if w0 & MAGIC_MASK == DATA_MAGIC && w1 == w0 + 8 {
        DmaResult::Reached(PhysAddr::new(w0 & !MAGIC_MASK))
    } else if w0 == 0 && w1 == 0 {
        DmaResult::Blocked
    } else {
        DmaResult::Other(w0)
    }
}

/// Plays `scenario` on `backend` and returns one outcome per command, DMA,
/// queue and fault-status step (memory writes produce none).
///
/// Errors are failures of the harness (QEMU gone, memory unreachable), not
/// of the unit under test, whose refusals are outcomes.
pub fn run<B: Backend>(backend: &mut B, scenario: &Scenario) -> Result<Vec<Outcome>> {
    if scenario.dma_count() > MAX_DMA_STEPS {
        return Err(Error::InvalidArgument { what: "more DMA steps than buffer slots" });
    }
    let mut unit = RemappingUnit::with_budget(backend.mmio(), POLLS)?;
    reset(backend, &mut unit)?;
    prepare(backend)?;
    let mut player =
        Player { backend, unit, outcomes: Vec::new(), tail: 0, slot: 0, reads: Vec::new() };
    for (i, step) in scenario.steps.iter().enumerate() {
        if let Some(outcome) = player.play(i, *step)? {
            player.outcomes.push(outcome);
        }
    }
    player.resolve_reads()?;
    player.backend.check()?;
    Ok(player.outcomes)
}

/// The driver's state while a scenario plays.
struct Player<'b, B: Backend> {
    backend: &'b mut B,
    unit: RemappingUnit<B::Mmio>,
    outcomes: Vec<Outcome>,
    /// Software's queue tail.
    tail: usize,
    /// The next free buffer slot.
    slot: usize,
    /// The reads to resolve at the end: outcome index and buffer offset.
    reads: Vec<(usize, usize)>,
}

impl<B: Backend> Player<'_, B> {
    /// Performs step `i` and observes it.
    fn play(&mut self, i: usize, step: Step) -> Result<Option<Outcome>> {
        let command = |result: core::result::Result<(), UnitError>| Outcome::Command {
            step: i,
            result: result.map(|()| None),
        };
        let performed = |result: core::result::Result<Granularity, UnitError>| Outcome::Command {
            step: i,
            result: result.map(Some),
        };
        let unit = &mut self.unit;
        Ok(Some(match step {
            Step::Write { addr, value } => {
                self.backend.mem().write_u64(addr, value)?;
                return Ok(None);
            }
            Step::SetRoot { table } => {
                command(unit.set_root_table(table, TranslationTableMode::Legacy))
            }
            Step::SetScalableRoot { table } => {
                command(unit.set_root_table(table, TranslationTableMode::Scalable))
            }
            Step::EnableTranslation => command(unit.enable_translation()),
            Step::InvalidateContext(scope) => performed(unit.invalidate_context(scope)),
            Step::InvalidateIotlb(scope) => performed(unit.invalidate_iotlb(scope, Drain::empty())),
            Step::EnableQueue => self.enable_queue(i, page(QUEUE)),
            Step::EnableQueueAt(base) => self.enable_queue(i, base),
            Step::DisableQueue => command(unit.disable_queued_invalidation()),
            Step::Post(raw) => {
                self.post(raw)?;
                self.queue_state(i)?
            }
            Step::RawTail(value) => {
                self.backend.mmio().write_reg(Iqt(value));
                self.queue_state(i)?
            }
            Step::RecoverQueue => {
                // Drop what was not fetched before clearing IQE: a unit may
                // resume fetching as soon as IQE is clear.
                self.tail = unit.queue_head()?;
                unit.write_queue_tail(self.tail)?;
                let _ = unit.take_queue_error();
                self.queue_state(i)?
            }
            Step::ClearQueueError => {
                let _ = unit.take_queue_error();
                self.queue_state(i)?
            }
            Step::FaultStatus => {
                let fsts: Fsts = unit.mmio().read_reg();
                Outcome::FaultStatus {
                    step: i,
                    overflow: fsts.pfo(),
                    pending: fsts.ppf(),
                    index: fsts.fri(),
                }
            }
            Step::ReadRegister { offset } => {
                Outcome::Register { step: i, offset, value: self.backend.mmio().read32(offset) }
            }
            Step::WriteRegister { offset, value } => {
                self.backend.mmio().write32(offset, value);
                return Ok(None);
            }
            Step::Dma { access, iova } => self.dma(i, access, iova, true)?,
            Step::DmaNoDrain { access, iova } => self.dma(i, access, iova, false)?,
        }))
    }

    fn enable_queue(&mut self, i: usize, base: PhysAddr) -> Outcome {
        self.tail = 0;
        let result = self.unit.enable_queued_invalidation(Iqa::new(base, QUEUE_SIZE, WIDTH));
        Outcome::Command { step: i, result: result.map(|()| None) }
    }

    /// Writes `raw` into the queue slot at the tail, then moves IQT past it.
    fn post(&mut self, raw: RawDescriptor) -> Result<()> {
        let at = PhysAddr::new(page(QUEUE).as_u64() + (self.tail * WIDTH.bytes()) as u64);
        self.backend.mem().write_bytes(at, &raw.to_le_bytes())?;
        self.tail = (self.tail + 1) % QUEUE_SIZE.entries(WIDTH);
        Ok(self.unit.write_queue_tail(self.tail)?)
    }

    /// IQH and the queue error (FSTS.IQE with IQERCD.IQEI), left set.
    fn queue_state(&self, step: usize) -> Result<Outcome> {
        let head = self.unit.queue_head()?;
        let mmio = self.unit.mmio();
        let error = mmio.read_reg::<Fsts>().iqe().then(|| mmio.read_reg::<Iqercd>().iqei());
        Ok(Outcome::Queue { step, head, error })
    }

    /// A 16-byte DMA through the next buffer slot; the fault records are
    /// drained if `drain`.
    fn dma(&mut self, i: usize, access: Access, iova: Iova, drain: bool) -> Result<Outcome> {
        let offset = self.slot * SLOT;
        let result = match access {
            Access::Read => {
                self.backend.dma_read(iova, offset, SLOT)?;
                self.reads.push((self.outcomes.len(), offset));
                // Resolved at the end, from the buffer.
                DmaResult::Blocked
            }
            Access::Write => {
                self.backend.dma_write(offset, iova, SLOT)?;
                self.find_write(marks(self.slot)[0])?
            }
        };
        self.slot += 1;
        let faults = if drain {
            self.unit.drain_faults().map(FaultSeen::from).collect()
        } else {
            Vec::new()
        };
        Ok(Outcome::Dma { step: i, access, result, faults })
    }

    /// Where the word `mark` turned up in the layout's pages, if anywhere.
    fn find_write(&self, mark: u64) -> Result<DmaResult> {
        let mut buf = vec![0; PAGE];
        for n in (0..PAGES).filter(|n| *n != SEED && *n != SCRATCH) {
            self.backend.mem().read_bytes(page(n), &mut buf)?;
            if let Some(i) = words(&buf).position(|w| w == mark) {
                return Ok(DmaResult::Reached(PhysAddr::new(page(n).as_u64() + i as u64 * 8)));
            }
        }
        Ok(DmaResult::Blocked)
    }

    /// Turns translation off, copies the buffer out untranslated, and fills
    /// in what each read fetched.
    fn resolve_reads(&mut self) -> Result<()> {
        if self.reads.is_empty() {
            return Ok(());
        }
        self.unit.disable_translation()?;
        let scratch = page(SCRATCH);
        self.backend.dma_write(0, Iova::new(scratch.as_u64()), EDU_BUFFER_SIZE)?;
        let mut buffer = vec![0; PAGE];
        self.backend.mem().read_bytes(scratch, &mut buffer)?;
        for &(at, offset) in &self.reads {
            if let Some(Outcome::Dma { result, .. }) = self.outcomes.get_mut(at) {
                *result = classify_read(&buffer[offset..offset + SLOT]);
            }
        }
        Ok(())
    }
}

/// Brings a unit a scenario ran on back to its reset state as far as the
/// next scenario can tell: translation and queued invalidation off (a
/// stopped queue emptied, then a wait descriptor run, which QEMU wants
/// last before QIE may clear; its status lands in the scratch page), context cache and IOTLB invalidated
/// globally, fault records and FSTS.PFO cleared. A fresh unit is left as
/// it was.
fn reset<B: Backend>(backend: &B, unit: &mut RemappingUnit<B::Mmio>) -> Result<()> {
    unit.disable_translation()?;
    if unit.status().contains(GlobalBits::QIE) {
        // This handle did not enable the queue, so it goes through the
        // registers: IQT = IQH drops what is left, IQE is cleared, then a
        // wait descriptor at IQH is handed over and run.
        let mut mmio = backend.mmio();
        let head = mmio.read_reg::<Iqh>().index(WIDTH);
        mmio.write_reg(Iqt::from_index(head, WIDTH));
        let _ = unit.take_queue_error();
        let slot = PhysAddr::new(page(QUEUE).as_u64() + (head * WIDTH.bytes()) as u64);
        // With a status write: QEMU refuses a wait with neither SW nor IF.
        let status = WaitDesc::NONE
            .with_status_write(page(SCRATCH), 1)
            .map_err(|_| Error::InvalidArgument { what: "scratch page is not a status address" })?;
        let wait = Descriptor::from(status).encode();
        backend.mem().write_bytes(slot, &wait.to_le_bytes())?;
        mmio.write_reg(Iqt::from_index((head + 1) % QUEUE_SIZE.entries(WIDTH), WIDTH));
        unit.disable_queued_invalidation()?;
    }
    unit.invalidate_context(ContextScope::Global)?;
    unit.invalidate_iotlb(IotlbScope::Global, Drain::empty())?;
    unit.drain_faults().for_each(drop);
    Ok(())
}

/// Zeroes the table pages, fills the data pages, and loads the device
/// buffer with the slot markers while translation is off.
fn prepare<B: Backend>(backend: &mut B) -> Result<()> {
    let mem = backend.mem();
    for n in 0..DATA {
        mem.zero_frame(page(n))?;
    }
    for n in DATA..SEED {
        mem.write_bytes(page(n), &layout::data_page(n))?;
    }
    let seed: Vec<u8> = (0..PAGE / SLOT).flat_map(marks).flat_map(u64::to_le_bytes).collect();
    mem.write_bytes(page(SEED), &seed)?;
    mem.zero_frame(page(SCRATCH))?;
    backend.dma_read(Iova::new(page(SEED).as_u64()), 0, EDU_BUFFER_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_classified_by_their_words() {
        let bytes = |a: u64, b: u64| [a.to_le_bytes(), b.to_le_bytes()].concat();
        let w = DATA_MAGIC | 0x100_8010;
        assert_eq!(classify_read(&bytes(w, w + 8)), DmaResult::Reached(PhysAddr::new(0x100_8010)));
        assert_eq!(classify_read(&bytes(0, 0)), DmaResult::Blocked);
        assert_eq!(classify_read(&bytes(w, w)), DmaResult::Other(w));
        let [m0, m1] = marks(3);
        assert_eq!(classify_read(&bytes(m0, m1)), DmaResult::Other(m0));
    }
}
