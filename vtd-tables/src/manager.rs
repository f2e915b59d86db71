//! The root and context tables of one remapping unit (VT-d §3.4.2, §9.1,
//! §9.3, legacy mode): which domain, and which second-level table, each
//! device's requests use.

use vtd_regs::regs::cap::Agaw;
use vtd_regs::{DomainId, FrameAllocator, PAGE_SIZE, PhysAddr, PhysMem, SourceId};

use crate::context::{CONTEXT_ENTRIES, ContextEntry, TranslationType};
use crate::error::Result;
use crate::frames::alloc_table;
use crate::root::{ROOT_ENTRIES, RootEntry};
use crate::table::SlPageTable;

/// What a device's context entry says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Attachment {
    /// Translate through the second-level table at `table`, `agaw` deep.
    Translated {
        /// The domain id (DID).
        domain: DomainId,
        /// The table's root frame (SLPTPTR).
        table: PhysAddr,
        /// The table's depth (AW).
        agaw: Agaw,
    },
    /// Pass untranslated requests through (TT = 10b, needs ECAP.PT); `agaw`
    /// should be the widest the unit supports (§9.3).
    PassThrough {
        /// The domain id (DID).
        domain: DomainId,
        /// The AW value.
        agaw: Agaw,
    },
    /// No context (P = 0): every request from the device faults (2h).
    /// Legacy mode has no other way to block a device.
    Blocked,
}

impl Attachment {
    /// The context entry that encodes it.
    pub const fn entry(self) -> ContextEntry {
        match self {
            Attachment::Translated { domain, table, agaw } => {
                ContextEntry::translated(domain, table, agaw, TranslationType::Untranslated)
            }
            Attachment::PassThrough { domain, agaw } => ContextEntry::pass_through(domain, agaw),
            Attachment::Blocked => ContextEntry::NOT_PRESENT,
        }
    }
}

/// A device's context entry changed: the context cache (device-selective)
/// and, if it had a domain, that domain's IOTLB entries must be invalidated
/// before the change is sure to be seen (§6.5.3.3). Under caching mode
/// (CAP.CM) this holds even when the device had no context.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[must_use = "the context cache must be invalidated for the device"]
pub struct ContextChange {
    /// The device.
    pub sid: SourceId,
    /// The domain of the previous present entry.
    pub previous: Option<DomainId>,
    /// The domain of the new entry (`None`: blocked).
    pub current: Option<DomainId>,
}

/// The root table and the context tables of one unit, built on demand.
///
/// Dropping it leaks its frames; call [`destroy`](Self::destroy) when the
/// unit no longer uses the root table.
#[derive(Debug)]
pub struct ContextManager<M: PhysMem, A: FrameAllocator> {
    mem: M,
    alloc: A,
    root: PhysAddr,
}

impl<M: PhysMem, A: FrameAllocator> ContextManager<M, A> {
    /// An empty root table: every device is blocked.
    pub fn new(mem: M, alloc: A) -> Result<Self> {
        let root = alloc_table(&mem, &alloc)?;
        Ok(Self { mem, alloc, root })
    }

    /// The root table's address, for RTADDR_REG (legacy mode, TTM = 00b).
    pub const fn root_table(&self) -> PhysAddr {
        self.root
    }

    /// Attaches `sid` to `domain`, translated through `table`.
    pub fn attach<TM: PhysMem, TA: FrameAllocator>(
        &mut self,
        sid: SourceId,
        domain: DomainId,
        table: &SlPageTable<TM, TA>,
    ) -> Result<ContextChange> {
        self.set(
            sid,
            Attachment::Translated { domain, table: table.root(), agaw: table.config().agaw() },
        )
    }

    /// Blocks `sid` (clears its context entry).
    pub fn detach(&mut self, sid: SourceId) -> Result<ContextChange> {
        self.set(sid, Attachment::Blocked)
    }

    /// Programs `sid`'s context entry. A present entry is first made not
    /// present, so the unit never reads a mix of old and new halves.
    pub fn set(&mut self, sid: SourceId, to: Attachment) -> Result<ContextChange> {
        let root = RootEntry::read(&self.mem, self.root, sid.bus())?;
        let ctx_table = if root.present() {
            root.context_table()
        } else if to == Attachment::Blocked {
            return Ok(ContextChange { sid, previous: None, current: None });
        } else {
            let t = alloc_table(&self.mem, &self.alloc)?;
            if let Err(e) = RootEntry::new(t).write(&self.mem, self.root, sid.bus()) {
                self.alloc.deallocate(t, 0);
                return Err(e.into());
            }
            t
        };
        let old = ContextEntry::read(&self.mem, ctx_table, sid)?;
        let new = to.entry();
        if old.present() {
            ContextEntry::NOT_PRESENT.write(&self.mem, ctx_table, sid)?;
        }
        new.write(&self.mem, ctx_table, sid)?;
        Ok(ContextChange {
            sid,
            previous: old.present().then(|| old.domain_id()),
            current: new.present().then(|| new.domain_id()),
        })
    }

    /// `sid`'s context entry as it is in memory.
    pub fn context(&self, sid: SourceId) -> Result<ContextEntry> {
        let root = RootEntry::read(&self.mem, self.root, sid.bus())?;
        if !root.present() {
            return Ok(ContextEntry::NOT_PRESENT);
        }
        Ok(ContextEntry::read(&self.mem, root.context_table(), sid)?)
    }

    /// Frees the root table and every context table, and gives back the
    /// memory and the allocator. The second-level tables are their
    /// domains' to free.
    pub fn destroy(self) -> (M, A) {
        for bus in 0..ROOT_ENTRIES {
            if let Ok(r) = RootEntry::read(&self.mem, self.root, bus as u8)
                && r.present()
            {
                self.alloc.deallocate(r.context_table(), 0);
            }
        }
        self.alloc.deallocate(self.root, 0);
        (self.mem, self.alloc)
    }
}

const _: () =
    assert!(ROOT_ENTRIES * 16 == PAGE_SIZE as usize && CONTEXT_ENTRIES * 16 == PAGE_SIZE as usize);
