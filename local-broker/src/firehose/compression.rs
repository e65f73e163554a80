//! Object compression: `CompressionFormat` and the file extension each format gets.

use std::io::Write as _;

/// A destination's `CompressionFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    Gzip,
    Zip,
    /// The Snappy framing format (`.snappy`).
    Snappy,
    /// Hadoop's block-compressed Snappy (`.hsnappy`): big-endian lengths around raw blocks.
    HadoopSnappy,
}

/// The model's enum values, in order.
pub const COMPRESSION_FORMATS: [&str; 5] =
    ["UNCOMPRESSED", "GZIP", "ZIP", "Snappy", "HADOOP_SNAPPY"];

/// Hadoop's SnappyCodec compresses input in blocks of at most this many bytes.
const HADOOP_SNAPPY_BLOCK: usize = 256 * 1024;

impl Compression {
    /// Parses the wire value (exact case); `None` is UNCOMPRESSED.
    pub fn parse(format: Option<&str>) -> Option<Self> {
        Some(match format.unwrap_or("UNCOMPRESSED") {
            "UNCOMPRESSED" => Self::Uncompressed,
            "GZIP" => Self::Gzip,
            "ZIP" => Self::Zip,
            "Snappy" => Self::Snappy,
            "HADOOP_SNAPPY" => Self::HadoopSnappy,
            _ => return None,
        })
    }

    /// The extension Firehose gives objects in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Uncompressed => "",
            Self::Gzip => ".gz",
            Self::Zip => ".zip",
            Self::Snappy => ".snappy",
            Self::HadoopSnappy => ".hsnappy",
        }
    }

    /// Compresses one object's bytes. `entry_name` names the single file inside a ZIP archive.
    pub fn compress(self, data: &[u8], entry_name: &str) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Uncompressed => Ok(data.to_vec()),
            Self::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(data)?;
                encoder.finish()
            }
            Self::Zip => {
                let mut archive = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated);
                archive
                    .start_file(entry_name, options)
                    .map_err(std::io::Error::other)?;
                archive.write_all(data)?;
                Ok(archive
                    .finish()
                    .map_err(std::io::Error::other)?
                    .into_inner())
            }
            Self::Snappy => {
                let mut encoder = snap::write::FrameEncoder::new(Vec::new());
                encoder.write_all(data)?;
                encoder.into_inner().map_err(|e| e.into_error())
            }
            Self::HadoopSnappy => {
                let mut out = Vec::with_capacity(data.len() / 2 + 16);
                let mut encoder = snap::raw::Encoder::new();
                for block in data.chunks(HADOOP_SNAPPY_BLOCK) {
                    let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                    out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                    out.extend_from_slice(&compressed);
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    const DATA: &[u8] = b"{\"a\":1}\n{\"a\":2}\n";

    #[test]
    fn gzip_round_trips() {
        let packed = Compression::Gzip.compress(DATA, "x").unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, DATA);
    }

    #[test]
    fn zip_holds_one_entry() {
        let packed = Compression::Zip.compress(DATA, "obj").unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(packed)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut out = Vec::new();
        archive.by_index(0).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, DATA);
    }

    #[test]
    fn snappy_framed_and_hadoop_round_trip() {
        let packed = Compression::Snappy.compress(DATA, "x").unwrap();
        let mut out = Vec::new();
        snap::read::FrameDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, DATA);

        let packed = Compression::HadoopSnappy.compress(DATA, "x").unwrap();
        let raw_len = u32::from_be_bytes(packed[0..4].try_into().unwrap()) as usize;
        let block_len = u32::from_be_bytes(packed[4..8].try_into().unwrap()) as usize;
        assert_eq!(raw_len, DATA.len());
        let out = snap::raw::Decoder::new()
            .decompress_vec(&packed[8..8 + block_len])
            .unwrap();
        assert_eq!(out, DATA);
    }
}
