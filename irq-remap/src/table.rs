//! [`IrTable`]: one unit's interrupt remapping table (§5.1.3) and who uses
//! which entries.

use heapless::Deque;
use invalidation::{Invalidation, Invalidator, Ticket};
use vtd_regs::desc::IecScope;
use vtd_regs::irq::{Interrupt, InterruptMode, Irte, RawIrte, RemappedIrte};
use vtd_regs::regs::Irta;
use vtd_regs::{FrameAllocator, PAGE_SHIFT, PhysAddr, PhysMem, SourceId};

use crate::blocks::Blocks;
use crate::handle::{Handle, Released};
use crate::unit::UnitAccess;
use crate::{Error, Result};

/// Freed blocks awaiting their invalidation at most; one more waits for
/// the oldest to complete.
pub const PENDING: usize = 16;

/// A freed block and the ticket of the invalidation covering it.
#[derive(Clone, Copy, Debug)]
struct Pending {
    ticket: Ticket,
    index: u16,
    order: u8,
}

/// An interrupt remapping table of `64 * WORDS` entries (a power of two,
/// 64 to 65536; 256 by default) in memory `P`, with a fixed-capacity
/// record of the entries in use.
///
/// Entries are handed out as aligned blocks ([`Handle`]), programmed with
/// source validation ([`program_device`](Self::program_device)),
/// re-targeted ([`set_affinity`](Self::set_affinity)) with the owed
/// interrupt entry cache invalidation done and waited for, and freed by
/// value into a [`Released`] token: the block is reusable only once an
/// invalidation covering it has completed ([`retire`](Self::retire),
/// [`reclaim`](Self::reclaim)), as an IOVA range is.
#[derive(Debug)]
pub struct IrTable<P: PhysMem, const WORDS: usize = 4> {
    mem: P,
    base: PhysAddr,
    frames_order: u8,
    mode: InterruptMode,
    /// ECAP.MHMV of the unit the table was enabled on: the widest index
    /// mask it takes (0 until then).
    mhmv: u8,
    blocks: Blocks<WORDS>,
    pending: Deque<Pending, PENDING>,
}

impl<P: PhysMem, const WORDS: usize> IrTable<P, WORDS> {
    /// Entries of the table.
    pub const ENTRIES: u32 = Blocks::<WORDS>::ENTRIES;

    /// A table of zeroed (not present) entries in frames from `frames`,
    /// for a unit in `mode` (xAPIC or x2APIC destinations). `WORDS` must
    /// be a power of two from 1 to 1024 ([`Error::Capacity`]).
    pub fn new<A: FrameAllocator>(mem: P, frames: &A, mode: InterruptMode) -> Result<Self> {
        if !WORDS.is_power_of_two() || WORDS > 1024 {
            return Err(Error::Capacity);
        }
        // 16 bytes an entry: 64 * WORDS entries are WORDS KiB.
        let frames_order = (WORDS / 4).max(1).trailing_zeros() as u8;
        let base = frames.allocate(frames_order).ok_or(Error::OutOfFrames)?;
        let zeroed = (0..1u64 << frames_order)
            .try_for_each(|p| mem.zero_frame(PhysAddr::new(base.as_u64() + (p << PAGE_SHIFT))));
        if let Err(e) = zeroed {
            frames.deallocate(base, frames_order);
            return Err(Error::Mem(e));
        }
        Ok(Self {
            mem,
            base,
            frames_order,
            mode,
            mhmv: 0,
            blocks: Blocks::new(),
            pending: Deque::new(),
        })
    }

    /// IRTA_REG for the table: its address, S (2^(S+1) entries) and EIME.
    pub fn irta(&self) -> Irta {
        Irta::new(self.base, (Self::ENTRIES.trailing_zeros() - 1) as u8, self.mode.eime())
    }

    /// The destination mode of the table's entries.
    pub fn mode(&self) -> InterruptMode {
        self.mode
    }

    /// The table's frames (2^order from the address), to give back once
    /// the unit no longer uses it.
    pub fn frames(&self) -> (PhysAddr, u8) {
        (self.base, self.frames_order)
    }

    /// Entries handed out or awaiting their invalidation.
    pub fn in_use(&self) -> u32 {
        self.blocks.in_use()
    }

    /// Freed blocks whose invalidation has not been seen complete.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Turns interrupt remapping on with this table, in the order the
    /// specification asks (§5.1.3, §6.5.2.7, §10.4.4): IRTA with EIME for
    /// x2APIC and SIRTP; a global interrupt entry cache invalidation
    /// (nothing the unit cached from an earlier table survives; skipped
    /// when CAP.ESIRTPS says SIRTP did it); compatibility-format
    /// interrupts blocked (CFI clear, so the protection holds from the
    /// moment remapping is on; Linux clears it just after IRE); then IRE.
    ///
    /// Needs ECAP.IR, and ECAP.EIM in x2APIC mode.
    pub fn enable<U: UnitAccess>(&mut self, unit: &mut U) -> Result<()> {
        let irta = self.irta();
        let u = unit.remapping_unit();
        let esirtps = u.cap().esirtps();
        u.set_interrupt_remap_table(irta).map_err(Error::Unit)?;
        self.mhmv = u.ecap().mhmv();
        if !esirtps {
            unit.invalidate([Invalidation::InterruptEntries(IecScope::Global)])
                .map_err(Error::Invalidation)?;
        }
        let u = unit.remapping_unit();
        u.set_compatibility_format(false).map_err(Error::Unit)?;
        u.set_interrupt_remapping(true).map_err(Error::Unit)
    }

    /// Turns interrupt remapping off (GCMD.IRE clear): interrupts pass as
    /// the devices send them.
    pub fn disable<U: UnitAccess>(&mut self, unit: &mut U) -> Result<()> {
        unit.remapping_unit().set_interrupt_remapping(false).map_err(Error::Unit)
    }

    /// A block of `count` entries (a power of two: 1 for MSI-X vectors and
    /// IOAPIC pins, up to 32 for a multi-vector MSI), aligned to its size.
    /// [`Error::Full`] if no free block is left (see
    /// [`allocate_reclaiming`](Self::allocate_reclaiming)).
    pub fn allocate(&mut self, count: u32) -> Result<Handle> {
        if !count.is_power_of_two() || count > Self::ENTRIES {
            return Err(Error::BadCount(count));
        }
        let order = count.trailing_zeros() as u8;
        let index = self.blocks.allocate(order).ok_or(Error::Full)?;
        Ok(Handle { index: index as u16, order })
    }

    /// [`allocate`](Self::allocate), which on a full table first takes
    /// back the freed blocks whose invalidation completed, then waits for
    /// pending ones, oldest first, until a block fits.
    pub fn allocate_reclaiming<I: Invalidator>(
        &mut self,
        inv: &mut I,
        count: u32,
    ) -> Result<Handle> {
        match self.allocate(count) {
            Err(Error::Full) => {}
            done => return done,
        }
        self.reclaim(inv)?;
        loop {
            match self.allocate(count) {
                Err(Error::Full) if !self.pending.is_empty() => self.wait_oldest(inv)?,
                done => return done,
            }
        }
    }

    /// Writes `entry` for vector `sub` of `handle` (present, in the
    /// table's mode), then invalidates that index in the interrupt entry
    /// cache and waits for it, so the unit uses the new entry from then on.
    ///
    /// A present entry whose high quadword (source validation) stays is
    /// rewritten with one 64-bit store, so a request in between sees the
    /// old or the new entry, never a mix; one whose high quadword changes
    /// is made not present first (a request in between faults 22h).
    pub fn program<I: Invalidator>(
        &mut self,
        inv: &mut I,
        handle: &Handle,
        sub: u16,
        entry: &RemappedIrte,
    ) -> Result<()> {
        let index = handle.entry(sub).ok_or(Error::NotInBlock(sub))?;
        let raw = entry.encode(self.mode).map_err(Error::Entry)?;
        self.write(index, raw)?;
        self.invalidate_entry(inv, index)
    }

    /// [`program`](Self::program)s vector `sub` of `handle` to deliver
    /// `interrupt` for requests from `source` only (SVT = 01b, SQ = 00b:
    /// source validation on by default, as Linux's `set_msi_sid`).
    pub fn program_device<I: Invalidator>(
        &mut self,
        inv: &mut I,
        handle: &Handle,
        sub: u16,
        source: SourceId,
        interrupt: Interrupt,
    ) -> Result<()> {
        self.program(inv, handle, sub, &RemappedIrte::for_device(source, interrupt))
    }

    /// Moves vector `sub` of `handle` to `destination` and `vector` (an
    /// affinity change): the entry's low quadword rewritten in one store,
    /// then the owed index-selective invalidation, waited for.
    pub fn set_affinity<I: Invalidator>(
        &mut self,
        inv: &mut I,
        handle: &Handle,
        sub: u16,
        destination: u32,
        vector: u8,
    ) -> Result<()> {
        let Irte::Remapped(mut e) = self.entry(handle, sub)? else {
            return Err(Error::NotProgrammed(handle.index + sub));
        };
        e.interrupt.destination = destination;
        e.interrupt.vector = vector;
        self.program(inv, handle, sub, &e)
    }

    /// The entry of vector `sub` of `handle`, as in the table.
    pub fn entry(&self, handle: &Handle, sub: u16) -> Result<Irte> {
        let index = handle.entry(sub).ok_or(Error::NotInBlock(sub))?;
        self.read(index)?.decode(self.mode).map_err(Error::Entry)
    }

    /// Frees `handle`: its entries are made not present in memory. The
    /// returned token is what the block is owed: post
    /// [`Released::invalidation`], then [`retire`](Self::retire) it with
    /// the ticket ([`release`](Self::release) does both).
    ///
    /// A failing memory write keeps the block in use for good (it is never
    /// handed out again rather than handed out with a stale entry).
    pub fn free(&mut self, handle: Handle) -> Result<Released> {
        for sub in 0..handle.count() {
            self.write(handle.index + sub as u16, RawIrte::ZERO)?;
        }
        let scope = if handle.order <= self.mhmv {
            IecScope::Entries { index: handle.index, mask: handle.order }
        } else {
            IecScope::Global
        };
        Ok(Released { index: handle.index, order: handle.order, scope })
    }

    /// Takes back `released` with the `ticket` of a posted invalidation
    /// that covers it (the caller posted [`Released::invalidation`]); the
    /// block is handed out again once the ticket completed. With
    /// [`PENDING`] blocks already waiting, first waits for the oldest.
    pub fn retire<I: Invalidator>(
        &mut self,
        inv: &mut I,
        released: Released,
        ticket: Ticket,
    ) -> Result<()> {
        if self.pending.is_full() {
            self.wait_oldest(inv)?;
        }
        let p = Pending { ticket, index: released.index, order: released.order };
        // Room was made above.
        self.pending.push_back(p).map_err(|_| Error::Full)
    }

    /// Frees `handle`, posts the owed invalidation and retires the block
    /// (without waiting for the invalidation).
    pub fn release<I: Invalidator>(&mut self, inv: &mut I, handle: Handle) -> Result<()> {
        let released = self.free(handle)?;
        let ticket = inv.post([released.invalidation()]).map_err(Error::Invalidation)?;
        self.retire(inv, released, ticket)
    }

    /// Makes the freed blocks whose invalidation completed allocatable
    /// again (without waiting); returns how many.
    pub fn reclaim<I: Invalidator>(&mut self, inv: &mut I) -> Result<usize> {
        let mut n = 0;
        while let Some(p) = self.pending.front().copied() {
            if !inv.is_complete(p.ticket).map_err(Error::Invalidation)? {
                break;
            }
            self.pending.pop_front();
            self.blocks.set(u32::from(p.index), 1 << p.order, false);
            n += 1;
        }
        Ok(n)
    }

    /// Waits for every pending invalidation and takes the blocks back.
    pub fn drain<I: Invalidator>(&mut self, inv: &mut I) -> Result<()> {
        while !self.pending.is_empty() {
            self.wait_oldest(inv)?;
        }
        Ok(())
    }

    fn wait_oldest<I: Invalidator>(&mut self, inv: &mut I) -> Result<()> {
        if let Some(p) = self.pending.front() {
            inv.wait(p.ticket).map_err(Error::Invalidation)?;
        }
        self.reclaim(inv).map(drop)
    }

    fn invalidate_entry<I: Invalidator>(&mut self, inv: &mut I, index: u16) -> Result<()> {
        let scope = IecScope::Entries { index, mask: 0 };
        inv.invalidate([Invalidation::InterruptEntries(scope)]).map_err(Error::Invalidation)
    }

    fn address(&self, index: u16) -> PhysAddr {
        PhysAddr::new(self.base.as_u64() + u64::from(index) * RawIrte::SIZE)
    }

    fn read(&self, index: u16) -> Result<RawIrte> {
        let at = self.address(index);
        let lo = self.mem.read_u64(at).map_err(Error::Mem)?;
        let hi = self.mem.read_u64(PhysAddr::new(at.as_u64() + 8)).map_err(Error::Mem)?;
        Ok(RawIrte::new(lo, hi))
    }

    /// Writes the entry at `index` so the unit never reads a mix of two
    /// entries: the low quadword (with P) last, and alone when the high
    /// quadword stays.
    fn write(&mut self, index: u16, new: RawIrte) -> Result<()> {
        let old = self.read(index)?;
        let at = self.address(index);
        let hi = PhysAddr::new(at.as_u64() + 8);
        if old.hi() != new.hi() {
            if old.present() {
                self.mem.write_u64(at, 0).map_err(Error::Mem)?;
            }
            self.mem.write_u64(hi, new.hi()).map_err(Error::Mem)?;
        }
        self.mem.write_u64(at, new.lo()).map_err(Error::Mem)?;
        self.mem.flush_for_device(at, RawIrte::SIZE as usize);
        Ok(())
    }
}
