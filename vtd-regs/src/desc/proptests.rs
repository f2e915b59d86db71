//! Property tests: every valid descriptor survives encode/decode, and decode
//! of arbitrary bits never panics and, when it succeeds, re-encodes to the
//! same bits except the fields a reference model of the spec lists as
//! ignored.

use proptest::prelude::*;

use super::*;
use crate::addr::{Iova, PhysAddr};
use crate::ids::{DomainId, SourceId};
use crate::regs::DescriptorWidth;
use crate::scope::{ContextScope, Drain, FunctionMask, IotlbScope};

/// A mask of bits `lo..=hi`.
fn bits(lo: u32, hi: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

fn domain() -> impl Strategy<Value = DomainId> {
    any::<u16>().prop_map(DomainId::new)
}

fn sid() -> impl Strategy<Value = SourceId> {
    any::<u16>().prop_map(SourceId::from_raw)
}

fn pasid() -> impl Strategy<Value = Pasid> {
    (0u32..1 << 20).prop_map(|p| Pasid::new(p).unwrap())
}

/// An address aligned to 2^(12 + order) bytes, and the order. Page-selective
/// IOTLB scopes take orders up to 51, device-TLB ranges up to 52.
fn aligned(max_order: u8) -> impl Strategy<Value = (u64, u8)> {
    (any::<u64>(), 0..=max_order)
        .prop_map(|(a, o)| (a & !((1u128 << (12 + u32::from(o))) - 1) as u64, o))
}

fn context_scope() -> impl Strategy<Value = ContextScope> {
    prop_oneof![
        Just(ContextScope::Global),
        domain().prop_map(ContextScope::Domain),
        (domain(), sid(), 0u8..4).prop_map(|(domain, source, fm)| ContextScope::Device {
            domain,
            source,
            function_mask: FunctionMask::from_field(fm),
        }),
    ]
}

fn iotlb_scope() -> impl Strategy<Value = IotlbScope> {
    prop_oneof![
        Just(IotlbScope::Global),
        domain().prop_map(IotlbScope::Domain),
        (domain(), aligned(51), any::<bool>()).prop_map(|(d, (a, o), ih)| IotlbScope::pages(
            d,
            Iova::new(a),
            o,
            ih
        )
        .unwrap()),
    ]
}

fn ats_range() -> impl Strategy<Value = AtsRange> {
    aligned(AtsRange::MAX_ORDER).prop_map(|(a, o)| AtsRange::pages(Iova::new(a), o).unwrap())
}

fn descriptor() -> impl Strategy<Value = Descriptor> {
    prop_oneof![
        context_scope().prop_map(|scope| ContextCacheInv { scope }.into()),
        (iotlb_scope(), 0u8..4).prop_map(|(scope, d)| IotlbInv {
            scope,
            drain: Drain::from_bits_truncate(d)
        }
        .into()),
        (sid(), sid(), 0u8..32, ats_range()).prop_map(|(sid, pfsid, max_pending, range)| {
            DevTlbInv { sid, pfsid, max_pending, range }.into()
        }),
        prop_oneof![
            Just(IecScope::Global),
            (any::<u16>(), 0u8..=31).prop_map(|(i, m)| {
                let index = if m >= 16 { 0 } else { i & !((1u16 << m) - 1) };
                IecScope::entries(index, m).unwrap()
            }),
        ]
        .prop_map(|scope| IecInv { scope }.into()),
        (
            proptest::option::of((any::<u64>(), any::<u32>())),
            any::<bool>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(sw, interrupt, fence, page_request_drain)| {
                WaitDesc {
                    status_write: sw.map(|(a, d)| (PhysAddr::new(a & !3), d)),
                    interrupt,
                    fence,
                    page_request_drain,
                }
                .into()
            }),
        (
            domain(),
            pasid(),
            prop_oneof![
                Just(PasidIotlbScope::Pasid),
                (aligned(51), any::<bool>()).prop_map(|((a, o), ih)| PasidIotlbScope::pages(
                    Iova::new(a),
                    o,
                    ih
                )
                .unwrap()),
            ]
        )
            .prop_map(|(domain, pasid, scope)| PasidIotlbInv { domain, pasid, scope }.into()),
        prop_oneof![
            domain().prop_map(PasidCacheScope::Domain),
            (domain(), pasid())
                .prop_map(|(domain, pasid)| PasidCacheScope::Pasid { domain, pasid }),
            Just(PasidCacheScope::Global),
        ]
        .prop_map(|scope| PasidCacheInv { scope }.into()),
        (sid(), sid(), pasid(), 0u8..32, any::<bool>(), ats_range()).prop_map(
            |(sid, pfsid, pasid, max_pending, global, range)| {
                PasidDevTlbInv { sid, pfsid, pasid, max_pending, global, range }.into()
            }
        ),
    ]
}

/// Reference model: the reserved bits of each type's quadwords 0 and 1,
/// from the layouts of section 6.5.2 (type field excluded).
fn reserved(code: u8) -> [u64; 2] {
    match code {
        1 => [bits(6, 8) | bits(12, 15) | bits(50, 63), u64::MAX],
        2 => [bits(8, 8) | bits(12, 15) | bits(32, 63), bits(7, 11)],
        3 => [bits(4, 8) | bits(21, 31) | bits(48, 51), bits(1, 11)],
        4 => [bits(5, 8) | bits(12, 15) | bits(16, 26) | bits(48, 63), u64::MAX],
        5 => [bits(8, 8) | bits(12, 31), bits(0, 1)],
        6 => [bits(6, 8) | bits(12, 15) | bits(52, 63), bits(7, 11)],
        7 => [bits(6, 8) | bits(12, 15) | bits(52, 63), u64::MAX],
        8 => [0, bits(1, 10)],
        _ => [0, 0],
    }
}

/// Reference model: the bits hardware ignores for this descriptor's
/// granularity, which decode drops.
fn ignored(qw0: u64) -> [u64; 2] {
    let g = (qw0 >> 4) & 3;
    match (super::raw::type_code(qw0), g) {
        (1, 1) => [bits(16, 49), 0],
        (1, 2) => [bits(32, 49), 0],
        (2, 1) => [bits(16, 31), u64::MAX],
        (2, 2) => [0, u64::MAX],
        (4, _) if g & 1 == 0 => [bits(27, 47), 0],
        (5, _) if (qw0 >> 5) & 1 == 0 => [bits(32, 63), u64::MAX],
        (6, 2) => [0, u64::MAX],
        (7, 0) => [bits(32, 51), 0],
        (7, 3) => [bits(16, 51), 0],
        _ => [0, 0],
    }
}

/// Mostly-plausible raw descriptors: a type code biased to the defined
/// ones, random fields, often with reserved bits and AM cleared.
fn raw() -> impl Strategy<Value = RawDescriptor> {
    (
        prop_oneof![4 => 1u8..=8, 1 => 0u8..0x80],
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(code, qw0, qw1, clear_reserved, clear_am)| {
            let mut qw0 = (qw0 & !0xe0f) | u64::from(code & 0xf) | (u64::from(code >> 4) << 9);
            let mut qw1 = qw1;
            if clear_reserved {
                let [r0, r1] = reserved(code);
                qw0 &= !r0;
                qw1 &= !r1;
            }
            if clear_am {
                qw1 &= !0x3f;
            }
            RawDescriptor::new(qw0, qw1)
        })
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(d in descriptor()) {
        let raw = d.encode();
        prop_assert_eq!(raw.type_code(), d.ty().code());
        prop_assert_eq!(Descriptor::decode(raw), Ok(d));
        prop_assert_eq!(Descriptor::decode_wide(d.encode_wide()), Ok(d));
        prop_assert_eq!(Descriptor::read(DescriptorWidth::Bits256, &d.encode_wide().to_le_bytes()), Ok(d));
        let mut slot = [0xffu8; 32];
        prop_assert_eq!(d.write(DescriptorWidth::Bits256, &mut slot), Ok(()));
        prop_assert_eq!(slot, d.encode_wide().to_le_bytes());
        let narrow = Descriptor::read(DescriptorWidth::Bits128, &raw.to_le_bytes());
        let written = d.write(DescriptorWidth::Bits128, &mut slot[..16]);
        if d.ty().needs_wide_queue() {
            prop_assert_eq!(narrow, Err(DescError::NeedsWideQueue { ty: d.ty() }));
            prop_assert_eq!(written, Err(DescError::NeedsWideQueue { ty: d.ty() }));
        } else {
            prop_assert_eq!(narrow, Ok(d));
            prop_assert_eq!(written, Ok(()));
            prop_assert_eq!(&slot[..16], &raw.to_le_bytes()[..]);
        }
        prop_assert_eq!(d.write(DescriptorWidth::Bits256, &mut slot[..31]), Err(DescError::ShortSlot { len: 31 }));
    }

    #[test]
    fn decode_arbitrary_bits(raw in raw()) {
        let [r0, r1] = reserved(raw.type_code());
        let result = Descriptor::decode(raw);
        if let Ok(d) = result {
            prop_assert_eq!(raw.qw0() & r0, 0);
            prop_assert_eq!(raw.qw1() & r1, 0);
            let [i0, i1] = ignored(raw.qw0());
            prop_assert_eq!(d.encode(), RawDescriptor::new(raw.qw0() & !i0, raw.qw1() & !i1));
        } else if (raw.qw0() & r0) | (raw.qw1() & r1) != 0 {
            let reserved_error = matches!(
                result,
                Err(DescError::ReservedBits { .. } | DescError::MisalignedStatusAddress { .. })
            );
            prop_assert!(reserved_error, "{:?}", result);
        }
    }

    /// Hardware decoding differs from strict decoding only on the
    /// misaligned addresses and indices it accepts, and then it gives what
    /// strict decoding gives for the aligned value.
    #[test]
    fn hardware_decoding_aligns_what_strict_refuses(raw in raw()) {
        let strict = Descriptor::decode(raw);
        let hw = Descriptor::decode_with(raw, Decoding::Hardware);
        match strict {
            Ok(d) => prop_assert_eq!(hw, Ok(d)),
            Err(DescError::MisalignedAddress { order, .. }) if order <= 51 => {
                let d = hw.unwrap();
                prop_assert_eq!(Descriptor::decode(d.encode()), Ok(d));
                let bits = (1u64 << (12 + u32::from(order))) - 1;
                prop_assert_eq!(d.encode().qw1() & !bits, raw.qw1() & !bits);
            }
            Err(DescError::MisalignedIndex { mask, .. }) => {
                let d = hw.unwrap();
                prop_assert_eq!(Descriptor::decode(d.encode()), Ok(d));
                let index = ((1u64 << mask) - 1) << 32;
                prop_assert_eq!(d.encode().qw0() & !index, raw.qw0() & !index);
            }
            Err(e) => prop_assert_eq!(hw, Err(e)),
        }
    }

    #[test]
    fn decode_never_panics(qw in any::<[u64; 4]>()) {
        let raw = RawDescriptor::new(qw[0], qw[1]);
        let _ = Descriptor::decode(raw);
        let wide = Descriptor::decode_wide(RawDescriptor256::new(qw));
        if qw[2] | qw[3] != 0 {
            let upper_error = matches!(wide, Err(DescError::ReservedBits { qword: 2 | 3, .. }));
            prop_assert!(upper_error, "{:?}", wide);
        }
        for t in DescType::ALL {
            let _ = (t.code(), DescType::from_code(raw.type_code()));
        }
    }
}

#[test]
fn unknown_types() {
    assert_eq!(
        Descriptor::decode(RawDescriptor::new(0, 0)),
        Err(DescError::UnknownType { code: 0 })
    );
    // Page group response (9) is valid in a queue but not modelled here.
    assert_eq!(
        Descriptor::decode(RawDescriptor::new(9, 0)),
        Err(DescError::UnknownType { code: 9 })
    );
    // An IOTLB type with the upper type field set is type 0x12.
    assert_eq!(
        Descriptor::decode(RawDescriptor::new(0x0005_02e2, 0)),
        Err(DescError::UnknownType { code: 0x12 })
    );
    // A per-type decoder refuses another type.
    let wait = WaitDesc::NONE.encode();
    assert_eq!(
        ContextCacheInv::decode(wait),
        Err(DescError::TypeMismatch { expected: DescType::ContextCache, found: 5 })
    );
    assert_eq!(
        Descriptor::read(DescriptorWidth::Bits128, &[0x22; 15]),
        Err(DescError::ShortSlot { len: 15 })
    );
}
