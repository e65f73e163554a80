//! Where S3 destinations put objects: a local directory tree (`--s3-root DIR`, one directory per
//! bucket), or a real S3-compatible endpoint through `aws-sdk-s3` (`--s3-endpoint URL`, path-style
//! addressing, credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`).

use std::path::{Path, PathBuf};

/// Why an object could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No S3 root or endpoint is configured.
    #[error(
        "no S3 root or endpoint is configured (start the broker with --s3-root DIR or --s3-endpoint URL)"
    )]
    NotConfigured,
    /// The key would leave the bucket's directory.
    #[error("object key {0:?} is not a safe relative path")]
    UnsafeKey(String),
    /// The S3 endpoint refused.
    #[error("cannot put s3://{bucket}/{key}: {message}")]
    Endpoint {
        bucket: String,
        key: String,
        message: String,
    },
    /// The file system refused.
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The object store S3 destinations write to.
#[derive(Debug, Clone)]
pub enum ObjectStore {
    /// Nowhere: S3 destinations are refused at creation.
    None,
    /// `<root>/<bucket>/<key>`.
    Directory(PathBuf),
    /// An S3-compatible endpoint.
    Endpoint(aws_sdk_s3::Client),
}

impl ObjectStore {
    /// A store on the S3-compatible endpoint `url`, signing for `region` with the credentials
    /// in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (`test` / `test` when unset, which
    /// local S3 servers accept).
    pub fn endpoint(url: &str, region: &str) -> Self {
        let variable = |name: &str| std::env::var(name).unwrap_or_else(|_| "test".to_owned());
        let credentials = aws_sdk_s3::config::Credentials::new(
            variable("AWS_ACCESS_KEY_ID"),
            variable("AWS_SECRET_ACCESS_KEY"),
            std::env::var("AWS_SESSION_TOKEN").ok(),
            None,
            "local-broker",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(region.to_owned()))
            .endpoint_url(url)
            .force_path_style(true)
            .credentials_provider(credentials)
            .build();
        ObjectStore::Endpoint(aws_sdk_s3::Client::from_conf(config))
    }

    /// True when objects have somewhere to go.
    pub fn is_configured(&self) -> bool {
        !matches!(self, ObjectStore::None)
    }

    /// Stores one object. The file appears whole (written aside, then renamed).
    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), ObjectError> {
        match self {
            ObjectStore::None => Err(ObjectError::NotConfigured),
            ObjectStore::Directory(root) => {
                let path = object_path(root, bucket, key)?;
                let io = |source| ObjectError::Io {
                    path: path.display().to_string(),
                    source,
                };
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(io)?;
                }
                let partial = path.with_file_name(format!(
                    ".{}.partial",
                    path.file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("object")
                ));
                tokio::fs::write(&partial, body).await.map_err(io)?;
                tokio::fs::rename(&partial, &path).await.map_err(io)
            }
            ObjectStore::Endpoint(client) => client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(body.into())
                .send()
                .await
                .map(|_| ())
                .map_err(|err| ObjectError::Endpoint {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    message: aws_sdk_s3::error::DisplayErrorContext(err).to_string(),
                }),
        }
    }
}

/// The file of an object; keys that would climb out of the bucket are refused.
fn object_path(root: &Path, bucket: &str, key: &str) -> Result<PathBuf, ObjectError> {
    let unsafe_part = |part: &str| part.is_empty() || part == "." || part == "..";
    let segments: Vec<&str> = key.split('/').collect();
    let (last, folders) = segments
        .split_last()
        .ok_or_else(|| ObjectError::UnsafeKey(key.to_owned()))?;
    if unsafe_part(bucket) || unsafe_part(last) || folders.iter().any(|f| *f == "." || *f == "..") {
        return Err(ObjectError::UnsafeKey(key.to_owned()));
    }
    // Empty folder names (`a//b`) have no directory equivalent; they collapse.
    let mut path = root.join(bucket);
    for folder in folders.iter().filter(|f| !f.is_empty()) {
        path.push(folder);
    }
    path.push(last);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_paths_under_the_bucket() {
        let root = Path::new("/r");
        assert_eq!(
            object_path(root, "b", "2024/01/02/03/s-1-x").unwrap(),
            Path::new("/r/b/2024/01/02/03/s-1-x")
        );
        assert!(object_path(root, "b", "../x").is_err());
        assert!(object_path(root, "b", "a/").is_err());
    }
}
