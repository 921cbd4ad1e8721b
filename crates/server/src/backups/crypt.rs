//! File-to-file steps of a backup, each streaming in fixed memory (run on a blocking thread):
//! gzip and gunzip (SQLite copies; pg_dump compresses its own), and AES-256-GCM encryption in the
//! STREAM construction (Hoang–Reyhanitabar–Rogaway–Vizár; `aead::stream`, big-endian 32-bit
//! counter): 64 KiB segments, each sealed with its position and whether it is the last, so a
//! reordered, cut or extended file fails to open. The file starts with a magic and the nonce
//! prefix.

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::KeyInit as _;
use aes_gcm::{Aes256Gcm, Key};
use secrecy::{ExposeSecret as _, SecretSlice};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 6] = b"AWBK1\0";
const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;
/// The STREAM nonce prefix: 12-byte GCM nonce less the 4-byte counter and 1-byte last flag.
const NONCE_PREFIX: usize = 7;

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the backup is not one this server encrypted (bad header)")]
    NotOurs,
    #[error("the backup does not decrypt with this key: wrong key, or the file is corrupt or cut")]
    Tampered,
}

pub fn gzip(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut input = BufReader::new(File::open(from)?);
    let out = BufWriter::new(File::create(to)?);
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
    let n = std::io::copy(&mut input, &mut enc)?;
    enc.finish()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(n)
}

pub fn gunzip(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut dec = flate2::read::GzDecoder::new(BufReader::new(File::open(from)?));
    let mut out = BufWriter::new(File::create(to)?);
    let n = std::io::copy(&mut dec, &mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(n)
}

fn cipher(key: &SecretSlice<u8>) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose_secret()))
}

/// Reads until `buf` is full or the input ends; how many bytes were read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub fn encrypt(key: &SecretSlice<u8>, from: &Path, to: &Path) -> Result<(), CryptError> {
    let mut prefix = [0u8; NONCE_PREFIX];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut prefix);
    let mut enc = EncryptorBE32::from_aead(cipher(key), GenericArray::from_slice(&prefix));
    let mut input = BufReader::new(File::open(from)?);
    let mut out = BufWriter::new(File::create(to)?);
    out.write_all(MAGIC)?;
    out.write_all(&prefix)?;
    let mut cur = vec![0u8; SEGMENT];
    let mut next = vec![0u8; SEGMENT];
    let mut n = fill(&mut input, &mut cur)?;
    loop {
        let m = if n == SEGMENT {
            fill(&mut input, &mut next)?
        } else {
            0
        };
        if m == 0 {
            let sealed = enc
                .encrypt_last(&cur[..n])
                .map_err(|_| CryptError::Tampered)?;
            out.write_all(&sealed)?;
            break;
        }
        let sealed = enc
            .encrypt_next(&cur[..n])
            .map_err(|_| CryptError::Tampered)?;
        out.write_all(&sealed)?;
        std::mem::swap(&mut cur, &mut next);
        n = m;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

pub fn decrypt(key: &SecretSlice<u8>, from: &Path, to: &Path) -> Result<(), CryptError> {
    let mut input = BufReader::new(File::open(from)?);
    let mut header = [0u8; MAGIC.len() + NONCE_PREFIX];
    if fill(&mut input, &mut header)? != header.len() || &header[..MAGIC.len()] != MAGIC {
        return Err(CryptError::NotOurs);
    }
    let prefix: [u8; NONCE_PREFIX] = header[MAGIC.len()..]
        .try_into()
        .map_err(|_| CryptError::NotOurs)?;
    let mut dec = DecryptorBE32::from_aead(cipher(key), GenericArray::from_slice(&prefix));
    let mut out = BufWriter::new(File::create(to)?);
    let mut cur = vec![0u8; SEGMENT + TAG];
    let mut next = vec![0u8; SEGMENT + TAG];
    let mut n = fill(&mut input, &mut cur)?;
    loop {
        let m = if n == SEGMENT + TAG {
            fill(&mut input, &mut next)?
        } else {
            0
        };
        if m == 0 {
            let plain = dec
                .decrypt_last(&cur[..n])
                .map_err(|_| CryptError::Tampered)?;
            out.write_all(&plain)?;
            break;
        }
        let plain = dec
            .decrypt_next(&cur[..n])
            .map_err(|_| CryptError::Tampered)?;
        out.write_all(&plain)?;
        std::mem::swap(&mut cur, &mut next);
        n = m;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretSlice<u8> {
        SecretSlice::from(vec![b; 32])
    }

    #[test]
    fn a_file_round_trips_and_tampering_or_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for size in [0usize, 10, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 7] {
            let plain: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let (p, c, back) = (
                dir.path().join("p"),
                dir.path().join("c"),
                dir.path().join("b"),
            );
            std::fs::write(&p, &plain).unwrap();
            encrypt(&key(1), &p, &c).unwrap();
            decrypt(&key(1), &c, &back).unwrap();
            assert_eq!(std::fs::read(&back).unwrap(), plain, "{size}");
            assert!(matches!(
                decrypt(&key(2), &c, &back),
                Err(CryptError::Tampered)
            ));
            let mut bytes = std::fs::read(&c).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(&c, &bytes).unwrap();
            assert!(matches!(
                decrypt(&key(1), &c, &back),
                Err(CryptError::Tampered)
            ));
            if size > SEGMENT {
                // Cut after the first segment: the end is missing, so it cannot open.
                encrypt(&key(1), &p, &c).unwrap();
                let bytes = std::fs::read(&c).unwrap();
                std::fs::write(&c, &bytes[..MAGIC.len() + NONCE_PREFIX + SEGMENT + TAG]).unwrap();
                assert!(matches!(
                    decrypt(&key(1), &c, &back),
                    Err(CryptError::Tampered)
                ));
            }
        }
    }

    #[test]
    fn gzip_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let (p, z, back) = (
            dir.path().join("p"),
            dir.path().join("z"),
            dir.path().join("b"),
        );
        std::fs::write(&p, b"hello hello hello".repeat(1000)).unwrap();
        gzip(&p, &z).unwrap();
        gunzip(&z, &back).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&back).unwrap());
    }
}
