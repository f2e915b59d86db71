//! Kernel modules: found by name in the cached module tree and put in load
//! order by their dependencies.
//!
//! Debian's image packages ship no `modules.dep` (depmod writes it at
//! install), so the dependencies come from each module's ELF `.modinfo`
//! section (`depends=a,b`), as `modinfo` reads them. Names compare with
//! `-` and `_` alike, as the kernel does.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A module file to load, in [`ModuleTree::load_order`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The module's name, `_`-normalised (`vfio_pci`).
    pub name: String,
    /// Its `.ko` file.
    pub path: PathBuf,
}

/// The modules of one kernel, by name.
#[derive(Clone, Debug)]
pub struct ModuleTree {
    by_name: HashMap<String, PathBuf>,
}

impl ModuleTree {
    /// Indexes the `.ko` files under `dir` (a `lib/modules/<release>/`).
    pub fn scan(dir: &Path) -> Result<Self> {
        let mut by_name = HashMap::new();
        let mut pending = vec![dir.to_owned()];
        while let Some(d) = pending.pop() {
            let entries =
                fs::read_dir(&d).map_err(|e| Error::io(format!("reading {}", d.display()), &e))?;
            for entry in entries {
                let path = entry.map_err(|e| Error::io("reading a module directory", &e))?.path();
                if path.is_dir() {
                    pending.push(path);
                } else if let Some(name) = module_name(&path) {
                    by_name.insert(name, path);
                }
            }
        }
        Ok(ModuleTree { by_name })
    }

    /// The modules `names` need, each after the modules it depends on, each
    /// once: the order to `insmod` them.
    pub fn load_order<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<Module>> {
        let mut order = Vec::new();
        let mut visiting = Vec::new();
        for name in names {
            self.visit(&normalise(name.as_ref()), &mut visiting, &mut order)?;
        }
        Ok(order)
    }

    fn visit(&self, name: &str, visiting: &mut Vec<String>, order: &mut Vec<Module>) -> Result<()> {
        if order.iter().any(|m| m.name == name) {
            return Ok(());
        }
        if visiting.iter().any(|v| v == name) {
            return Err(Error::ModuleCycle { name: name.to_owned() });
        }
        let path =
            self.by_name.get(name).ok_or_else(|| Error::ModuleMissing { name: name.to_owned() })?;
        if path.extension().is_none_or(|ext| ext != "ko") {
            let what = "compressed (busybox insmod takes plain .ko: decompress it on the host)";
            return Err(Error::BadModule { path: path.clone(), what });
        }
        let image =
            fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), &e))?;
        let info = modinfo(&image)
            .ok_or_else(|| Error::BadModule { path: path.clone(), what: "no .modinfo section" })?;
        visiting.push(name.to_owned());
        for dep in depends(info) {
            self.visit(&normalise(dep), visiting, order)?;
        }
        visiting.pop();
        order.push(Module { name: name.to_owned(), path: path.clone() });
        Ok(())
    }
}

/// The kernel's spelling of a module name: `-` as `_`.
fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a `.ko` file, `None` for other files. Compressed
/// modules (`.ko.xz`, as 6.12 ships) are indexed too and refused when
/// loaded, with [`Error::BadModule`].
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".ko").or_else(|| {
        [".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|ext| file.strip_suffix(ext))
    })?;
    Some(normalise(stem))
}

/// The dependencies a `.modinfo` section lists.
fn depends(modinfo: &[u8]) -> impl Iterator<Item = &str> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok()?.strip_prefix("depends="))
        .flat_map(|list| list.split(','))
        .filter(|dep| !dep.is_empty())
}

/// The `.modinfo` section of a little-endian ELF64 object.
fn modinfo(elf: &[u8]) -> Option<&[u8]> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |off: usize| Some(u16::from_le_bytes(elf.get(off..off + 2)?.try_into().ok()?));
    let u32_at = |off: usize| Some(u32::from_le_bytes(elf.get(off..off + 4)?.try_into().ok()?));
    let u64_at = |off: usize| Some(u64::from_le_bytes(elf.get(off..off + 8)?.try_into().ok()?));
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    let section = |i: usize| -> Option<(usize, &[u8])> {
        let hdr = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(hdr)? as usize;
        let off = usize::try_from(u64_at(hdr + 0x18)?).ok()?;
        let size = usize::try_from(u64_at(hdr + 0x20)?).ok()?;
        Some((name, elf.get(off..off.checked_add(size)?)?))
    };
    let (_, names) = section(shstrndx)?;
    (0..shnum).find_map(|i| {
        let (name, data) = section(i)?;
        let name = names.get(name..)?.split(|&b| b == 0).next()?;
        (name == b".modinfo").then_some(data)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a section-name table and a `.modinfo`.
    fn elf_with_modinfo(info: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 0x40];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let names_off = elf.len();
        elf.extend_from_slice(names);
        let info_off = elf.len();
        elf.extend_from_slice(info);
        let shoff = elf.len();
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        for (name, off, size) in
            [(0u32, 0usize, 0usize), (1, names_off, names.len()), (11, info_off, info.len())]
        {
            let mut hdr = [0u8; 64];
            hdr[..4].copy_from_slice(&name.to_le_bytes());
            hdr[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            hdr[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&hdr);
        }
        elf
    }

    #[test]
    fn modinfo_lists_dependencies() {
        let elf = elf_with_modinfo(b"license=GPL\0depends=vfio,vfio_virqfd,irqbypass\0name=x\0");
        let info = modinfo(&elf).unwrap();
        assert_eq!(depends(info).collect::<Vec<_>>(), ["vfio", "vfio_virqfd", "irqbypass"]);
        let none = elf_with_modinfo(b"depends=\0");
        assert_eq!(depends(modinfo(&none).unwrap()).count(), 0);
        assert_eq!(modinfo(b"\x7fELF\x02\x01"), None);
        assert_eq!(modinfo(&elf[..elf.len() - 40]), None, "a truncated header table");
    }

    #[test]
    fn load_order_puts_dependencies_first_once() {
        let dir = std::env::temp_dir().join(format!("viommu-modules-{}", std::process::id()));
        let sub = dir.join("kernel/drivers");
        fs::create_dir_all(&sub).unwrap();
        for (file, deps) in [
            ("vfio-pci.ko", "vfio-pci-core,vfio"),
            ("vfio-pci-core.ko", "vfio,irqbypass"),
            ("vfio.ko", ""),
            ("irqbypass.ko", ""),
            ("loop_a.ko", "loop_b"),
            ("loop_b.ko", "loop-a"),
        ] {
            let info = format!("depends={deps}\0");
            fs::write(sub.join(file), elf_with_modinfo(info.as_bytes())).unwrap();
        }
        let tree = ModuleTree::scan(&dir).unwrap();
        let names = |order: Vec<Module>| order.into_iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(
            names(tree.load_order(&["vfio-pci", "vfio"]).unwrap()),
            ["vfio", "irqbypass", "vfio_pci_core", "vfio_pci"]
        );
        assert!(matches!(tree.load_order(&["loop_a"]), Err(Error::ModuleCycle { .. })));
        assert_eq!(
            tree.load_order(&["nope"]),
            Err(Error::ModuleMissing { name: "nope".to_owned() })
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
