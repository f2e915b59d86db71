//! The `Mmio` plug-in point: 32/64-bit access to a remapping unit's register
//! page, and typed access to registers at fixed offsets.
//!
//! A driver never forms a Rust reference to device memory (see google's
//! `safe-mmio` for why); it goes through an [`Mmio`] implementation: volatile
//! accesses for real hardware (`VolatileMmio`), the software model of
//! `vtd-emu`, a qtest connection to QEMU, or a trapped guest access.

/// Access to the 4 KiB register page of one remapping unit, by byte offset.
///
/// VT-d registers are 32 or 64 bits wide and naturally aligned (VT-d
/// §10.2). Software may access a 64-bit register as two 32-bit halves; the
/// default 64-bit methods do that, low half first, so a side effect bound to
/// the register (e.g. an IQT write) fires on the high half, as on hardware.
pub trait Mmio {
    /// Reads the 32-bit register at byte `offset` (4-byte aligned).
    fn read32(&self, offset: usize) -> u32;

    /// Writes the 32-bit register at byte `offset` (4-byte aligned).
    fn write32(&mut self, offset: usize, value: u32);

    /// Reads the 64-bit register at byte `offset` (8-byte aligned).
    fn read64(&self, offset: usize) -> u64 {
        let lo = self.read32(offset) as u64;
        let hi = self.read32(offset + 4) as u64;
        lo | (hi << 32)
    }

    /// Writes the 64-bit register at byte `offset` (8-byte aligned).
    fn write64(&mut self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }

    /// Reads the register `R` and decodes it. Only readable registers
    /// may be read: GCMD, for one, is write-only (§10.4.4).
    #[inline]
    fn read_reg<R: Register>(&self) -> R
    where
        Self: Sized,
        R::Access: Readable,
    {
        R::from_raw(R::Raw::read_from(self, R::OFFSET))
    }

    /// Encodes `value` and writes it to its register. Only writable
    /// registers may be written: CAP, for one, is read-only (§10.4.2).
    #[inline]
    fn write_reg<R: Register>(&mut self, value: R)
    where
        Self: Sized,
        R::Access: Writable,
    {
        R::Raw::write_to(self, R::OFFSET, value.to_raw());
    }
}

impl<T: Mmio + ?Sized> Mmio for &mut T {
    #[inline]
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    #[inline]
    fn write32(&mut self, offset: usize, value: u32) {
        (**self).write32(offset, value)
    }
    #[inline]
    fn read64(&self, offset: usize) -> u64 {
        (**self).read64(offset)
    }
    #[inline]
    fn write64(&mut self, offset: usize, value: u64) {
        (**self).write64(offset, value)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
    impl Sealed for super::ReadOnly {}
    impl Sealed for super::WriteOnly {}
    impl Sealed for super::ReadWrite {}
}

/// The access a register allows software (the specification's RO, WO, RW,
/// RW1C... attributes, VT-d §10.4, reduced to whether software may read
/// and whether it may write): one of [`ReadOnly`], [`WriteOnly`],
/// [`ReadWrite`].
pub trait Access: sealed::Sealed {}

/// Software may read the register.
#[diagnostic::on_unimplemented(
    message = "this register is write-only: software does not read it (VT-d §10.4)",
    label = "write-only register"
)]
pub trait Readable: Access {}

/// Software may write the register.
#[diagnostic::on_unimplemented(
    message = "this register is read-only: software cannot write it (VT-d §10.4)",
    label = "read-only register"
)]
pub trait Writable: Access {}

/// A register software only reads (CAP, ECAP, VER, GSTS, IQH, IQERCD).
#[derive(Clone, Copy, Debug)]
pub enum ReadOnly {}
/// A register software only writes (GCMD: its state is read in GSTS).
#[derive(Clone, Copy, Debug)]
pub enum WriteOnly {}
/// A register software reads and writes (some of its fields may be
/// read-only or write-1-to-clear).
#[derive(Clone, Copy, Debug)]
pub enum ReadWrite {}

impl Access for ReadOnly {}
impl Access for WriteOnly {}
impl Access for ReadWrite {}
impl Readable for ReadOnly {}
impl Readable for ReadWrite {}
impl Writable for WriteOnly {}
impl Writable for ReadWrite {}

/// The width of a register: `u32` or `u64`.
pub trait RegWidth: Copy + sealed::Sealed {
    /// Reads a register of this width.
    fn read_from<M: Mmio + ?Sized>(mmio: &M, offset: usize) -> Self;
    /// Writes a register of this width.
    fn write_to<M: Mmio + ?Sized>(mmio: &mut M, offset: usize, value: Self);
}

impl RegWidth for u32 {
    #[inline]
    fn read_from<M: Mmio + ?Sized>(mmio: &M, offset: usize) -> Self {
        mmio.read32(offset)
    }
    #[inline]
    fn write_to<M: Mmio + ?Sized>(mmio: &mut M, offset: usize, value: Self) {
        mmio.write32(offset, value)
    }
}

impl RegWidth for u64 {
    #[inline]
    fn read_from<M: Mmio + ?Sized>(mmio: &M, offset: usize) -> Self {
        mmio.read64(offset)
    }
    #[inline]
    fn write_to<M: Mmio + ?Sized>(mmio: &mut M, offset: usize, value: Self) {
        mmio.write64(offset, value)
    }
}

/// A register at a fixed offset of the register page, with its typed value
/// and the access software has to it.
///
/// Registers whose offset is only known at run time (the IOTLB registers at
/// ECAP.IRO, the fault recording registers at CAP.FRO) are read through
/// [`Mmio::read64`] at the offset their capability reports.
///
/// Reading a write-only register does not compile:
///
/// ```compile_fail,E0277
/// use vtd_regs::Mmio;
/// use vtd_regs::regs::Gcmd;
///
/// fn status<M: Mmio>(regs: &M) -> Gcmd {
///     regs.read_reg::<Gcmd>() // GCMD is write-only: read GSTS
/// }
/// ```
///
/// Nor does writing a read-only one:
///
/// ```compile_fail,E0277
/// use vtd_regs::Mmio;
/// use vtd_regs::regs::Cap;
///
/// fn clobber<M: Mmio>(regs: &mut M) {
///     regs.write_reg(Cap(0)); // CAP is read-only
/// }
/// ```
///
/// Readable and writable registers do both:
///
/// ```
/// use vtd_regs::Mmio;
/// use vtd_regs::regs::{Cap, Gcmd, GlobalBits, Gsts, Iqt};
///
/// fn touch<M: Mmio>(regs: &mut M) -> (Cap, Gsts, Iqt) {
///     regs.write_reg(Gcmd::from_bits(GlobalBits::TE));
///     regs.write_reg(Iqt(0));
///     (regs.read_reg(), regs.read_reg(), regs.read_reg())
/// }
/// ```
pub trait Register: Copy {
    /// Byte offset in the register page (VT-d §10.4, table of registers).
    const OFFSET: usize;
    /// The register's width.
    type Raw: RegWidth;
    /// What software may do with it: [`ReadOnly`], [`WriteOnly`] or
    /// [`ReadWrite`].
    type Access: Access;
    /// Decodes a raw value. Reserved bits are kept, so that a read-modify-write
    /// preserves them.
    fn from_raw(raw: Self::Raw) -> Self;
    /// Encodes the value.
    fn to_raw(self) -> Self::Raw;
}

/// Implements [`Register`] for a `#[repr(transparent)]` newtype over its raw
/// value, or (with `bitflags`) for a bitflags type keeping unknown bits.
macro_rules! register {
    ($ty:ty, $offset:expr, $raw:ty, $access:ident) => {
        impl $crate::mmio::Register for $ty {
            const OFFSET: usize = $offset;
            type Raw = $raw;
            type Access = $crate::mmio::$access;
            #[inline]
            fn from_raw(raw: $raw) -> Self {
                Self(raw)
            }
            #[inline]
            fn to_raw(self) -> $raw {
                self.0
            }
        }
    };
    (bitflags $ty:ty, $offset:expr, $raw:ty, $access:ident) => {
        impl $crate::mmio::Register for $ty {
            const OFFSET: usize = $offset;
            type Raw = $raw;
            type Access = $crate::mmio::$access;
            #[inline]
            fn from_raw(raw: $raw) -> Self {
                Self::from_bits_retain(raw)
            }
            #[inline]
            fn to_raw(self) -> $raw {
                self.bits()
            }
        }
    };
}
pub(crate) use register;
