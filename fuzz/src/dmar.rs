//! The DMAR table parser: parse with and without the checksum, then walk
//! every structure, device scope and path, touching every accessor.

use std::io::Write;

use vtd_regs::dmar::{Dmar, DmarError, RemappingStructure};

/// Parses `data` as a DMAR table and walks everything in it.
pub fn dmar(data: &[u8]) {
    let checked = Dmar::parse(data);
    match (checked, Dmar::parse_unchecked(data)) {
        (Ok(checked), Ok(unchecked)) => assert_eq!(checked.as_bytes(), unchecked.as_bytes()),
        (Err(DmarError::Checksum { sum }), Ok(unchecked)) => {
            let total = unchecked.as_bytes().iter().fold(0u8, |s, b| s.wrapping_add(*b));
            assert!(sum != 0 && sum == total, "checksum {sum:#x}, bytes sum to {total:#x}");
        }
        (Err(checked), Err(unchecked)) => assert_eq!(checked, unchecked),
        (checked, unchecked) => panic!("parse {checked:?} but parse_unchecked {unchecked:?}"),
    }
    if let Ok(dmar) = Dmar::parse_unchecked(data) {
        assert!(dmar.as_bytes().len() >= Dmar::HEADER_LEN && dmar.as_bytes().len() <= data.len());
        let _ = (dmar.revision(), dmar.oem_id(), dmar.oem_table_id(), dmar.oem_revision());
        let _ = (dmar.creator_id(), dmar.creator_revision(), dmar.host_address_width());
        let _ = (dmar.flags(), dmar.length());
        assert_eq!(walk(&dmar), dmar.validate());
        let _ = write!(std::io::sink(), "{dmar:?}");
    }
}

/// Walks every structure and scope, checking what the iterators promise,
/// and returns the first error in walk order.
fn walk(dmar: &Dmar<'_>) -> Result<(), DmarError> {
    let table_len = dmar.as_bytes().len();
    let structures = dmar.structures();
    let bound = structures.size_hint().1.unwrap_or(usize::MAX);
    assert!(bound <= table_len / 4 + 1);
    let mut first = Ok(());
    let mut count = 0;
    for structure in structures {
        count += 1;
        match structure {
            Ok(structure) => {
                touch(&structure);
                for scope in structure.device_scopes().into_iter().flatten() {
                    match scope {
                        Ok(scope) => {
                            let hops: Vec<_> = scope.path().collect();
                            assert!(scope.offset() + 6 + 2 * hops.len() <= table_len);
                            let _ = (scope.kind().raw(), scope.enumeration_id());
                            let resolved = scope.resolve(|bridge| Some(bridge.devfn()));
                            let last = resolved.map(|s| (s.device(), s.function()));
                            assert_eq!(last, hops.last().copied());
                        }
                        Err(e) => {
                            let _ = write!(std::io::sink(), "{e}");
                            first = first.and(Err(e));
                        }
                    }
                }
            }
            Err(e) => {
                let _ = write!(std::io::sink(), "{e}");
                first = first.and(Err(e));
            }
        }
    }
    assert!(count <= bound, "{count} structures, bound {bound}");
    first
}

/// Reads every accessor of one structure.
fn touch(structure: &RemappingStructure<'_>) {
    match structure {
        RemappingStructure::Drhd(d) => {
            let _ = (d.flags(), d.include_pci_all(), d.segment(), d.register_base());
            assert!(d.register_set_size().is_power_of_two());
        }
        RemappingStructure::Rmrr(r) => {
            assert!(r.base() <= r.limit() && r.pages() >= 1);
            assert!(r.contains(r.base()) && r.contains(r.limit()));
            let _ = r.segment();
        }
        RemappingStructure::Atsr(a) => {
            let _ = (a.flags(), a.all_ports(), a.segment());
        }
        RemappingStructure::Rhsa(r) => {
            let _ = (r.register_base(), r.proximity_domain());
        }
        RemappingStructure::Andd(a) => {
            assert!(!a.object_name().contains(&0));
            let _ = a.device_number();
        }
        RemappingStructure::Satc(s) => {
            let _ = (s.flags(), s.atc_required(), s.segment());
        }
        RemappingStructure::Other { kind, bytes, .. } => {
            assert!(*kind > 5 && bytes.len() >= 4);
        }
        _ => {}
    }
    let _ = (structure.kind(), write!(std::io::sink(), "{structure:?}"));
}
