//! A headless Debian Chromium driven over WebDriver: Debian's `chromedriver`
//! started on a free loopback port, one browser session, screenshots saved
//! under the test's output directory. Everything is stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tempfile::TempDir;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session; quits the browser and stops chromedriver when dropped.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    base: String,
    port: u16,
    session: Option<String>,
    driver: Child,
    shots: PathBuf,
    downloads: PathBuf,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium pointed at `base`;
    /// screenshots go to `CARGO_TARGET_TMPDIR/browser/<name>/`.
    pub async fn start(base: &str, name: &str) -> Browser {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's chromium and chromium-driver \
                 (./scripts/test does it)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).expect("download dir");
        let webdriver = format!("http://127.0.0.1:{port}");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--lang=zh-CN", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                // Downloads land in the profile, without asking.
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "plugins.always_open_pdf_externally": true,
                },
            }),
        );
        // chromedriver takes a moment to listen.
        let mut last_error = None;
        let mut client = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&webdriver)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(e) => {
                    last_error = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let client = client.unwrap_or_else(|| panic!("no WebDriver session: {last_error:?}"));
        let session = client.session_id().await.ok().flatten();
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("browser")
            .join(name);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Browser {
            client,
            base: base.to_owned(),
            port,
            session,
            driver,
            shots,
            downloads,
            _profile: profile,
        }
    }

    /// The bytes of the file the browser downloaded as `name`, waiting up to 20 s for the
    /// download to finish.
    pub async fn downloaded(&self, name: &str) -> Vec<u8> {
        let file = self.downloads.join(name);
        for _ in 0..200 {
            // Chromium writes to a `.crdownload` file and renames it when done.
            if let Ok(bytes) = std::fs::read(&file)
                && !bytes.is_empty()
            {
                return bytes;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seen: Vec<_> = std::fs::read_dir(&self.downloads)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        panic!("no download {name} within 20 s; the download folder holds {seen:?}");
    }

    /// Opens `path` of the server.
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// The element matching `css`, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element `{css}`: {e}"))
    }

    /// The visible text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    /// The visible text of the whole page.
    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    /// Types `value` into the field matching `css`, replacing what was there.
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear field");
        field.send_keys(value).await.expect("type into field");
    }

    /// Clicks the element matching `css` and waits for the next page.
    pub async fn click(&self, css: &str) {
        let old = self.find("html").await;
        self.find(css).await.click().await.expect("click");
        self.wait_for_new_page(old).await;
    }

    /// Waits until `old` (the previous page's root) is gone.
    pub async fn wait_for_new_page(&self, old: fantoccini::elements::Element) {
        for _ in 0..200 {
            if old.tag_name().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page did not change");
    }

    /// Logs in through the login form.
    pub async fn log_in(&self, username: &str, password: &str) {
        self.open("/login").await;
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.click("form[action='/login'] button[type=submit]")
            .await;
    }

    /// Logs out with the button in the header.
    pub async fn log_out(&self) {
        self.click("form[action='/logout'] button").await;
    }

    /// Saves a PNG of the whole current page (the window is stretched to the
    /// page's height for the shot) as `<step>.png` and returns its path.
    pub async fn screenshot(&self, step: &str) -> PathBuf {
        let (width, height) = self.client.get_window_size().await.expect("window size");
        let page_height = self
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .expect("page height")
            .as_u64()
            .unwrap_or(height);
        let tall = page_height.clamp(height, 6000);
        if tall > height {
            self.client
                .set_window_size(width as u32, tall as u32 + 20)
                .await
                .expect("stretch window");
        }
        let png = self.client.screenshot().await.expect("screenshot");
        if tall > height {
            self.client
                .set_window_size(width as u32, height as u32)
                .await
                .expect("restore window");
        }
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = self.shots.join(format!("{step}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session quits Chromium; then chromedriver goes.
        if let Some(session) = &self.session {
            let _ =
                ureq::delete(&format!("http://127.0.0.1:{}/session/{session}", self.port)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
