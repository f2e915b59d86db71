//! What a driver holds for its interrupts: a [`Handle`] (an aligned block
//! of table entries, freed by value) and, once freed, the [`Released`]
//! token standing for the interrupt entry cache invalidation owed before
//! the entries may be handed out again.

use invalidation::Invalidation;
use vtd_regs::desc::IecScope;
use vtd_regs::irq::{IoApicRte, MsiMessage, TriggerMode};

/// A block of `2^order` interrupt remapping table entries from `index`
/// (aligned to its size). Not `Clone`: it is given back by value
/// ([`IrTable::free`](crate::IrTable::free)), so it is freed once.
#[derive(PartialEq, Eq, Debug, Hash)]
pub struct Handle {
    pub(crate) index: u16,
    pub(crate) order: u8,
}

impl Handle {
    /// The first entry (the handle a remappable request names).
    pub const fn index(&self) -> u16 {
        self.index
    }
    /// Entries in the block.
    pub const fn count(&self) -> u32 {
        1 << self.order
    }
    /// The entry of vector `sub` of the block, if `sub` is in it.
    pub const fn entry(&self, sub: u16) -> Option<u16> {
        if (sub as u32) < self.count() { Some(self.index + sub) } else { None }
    }

    /// The message vector `sub` of the block must be given (§5.1.5.2):
    /// remappable format, the block's handle with SHV and `sub` as the
    /// subhandle, as Linux programs it. A multi-vector MSI device is given
    /// `msi(0)` and puts the vector number in the low data bits itself.
    pub const fn msi(&self, sub: u16) -> MsiMessage {
        MsiMessage::remappable(self.index, Some(sub))
    }

    /// The redirection entry an IOAPIC pin must be given for vector `sub`
    /// (§5.1.5.1); `vector` and `trigger` must be the entry's.
    pub const fn ioapic(&self, sub: u16, vector: u8, trigger: TriggerMode) -> IoApicRte {
        IoApicRte::remappable(self.index + sub, vector, trigger, false)
    }
}

/// A freed block: its entries are not present in memory, but the unit may
/// still hold them in its interrupt entry cache. The entries come back to
/// the table ([`IrTable::retire`](crate::IrTable::retire)) only with the
/// ticket of an invalidation covering them, and are handed out again only
/// once that ticket completed.
#[must_use = "the freed entries are lost unless the owed invalidation is posted and retired"]
#[derive(PartialEq, Eq, Debug, Hash)]
pub struct Released {
    pub(crate) index: u16,
    pub(crate) order: u8,
    pub(crate) scope: IecScope,
}

impl Released {
    /// The first entry freed.
    pub const fn index(&self) -> u16 {
        self.index
    }
    /// Entries freed.
    pub const fn count(&self) -> u32 {
        1 << self.order
    }
    /// The invalidation owed: index-selective over the block, or global
    /// when the block's mask exceeds the unit's ECAP.MHMV.
    pub const fn invalidation(&self) -> Invalidation {
        Invalidation::InterruptEntries(self.scope)
    }
}
