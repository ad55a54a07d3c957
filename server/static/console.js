// suiji web console: progress for long operations and the error page's way back,
// nothing else. The pages' Content-Security-Policy allows no inline script: behaviour
// lives here, keyed on data- attributes.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Links marked data-back go back a page (the form with its input still filled in);
  // without script, or with no page to go back to, they go where their href says.
  for (const link of document.querySelectorAll("a[data-back]")) {
    link.addEventListener("click", (event) => {
      if (history.length > 1) {
        event.preventDefault();
        history.back();
      }
    });
  }
  // Forms marked data-progress show elapsed time while the server works
  // (a large draw takes seconds) and cannot be sent twice.
  for (const form of document.querySelectorAll("form[data-progress]")) {
    form.addEventListener("submit", () => {
      const out = form.querySelector(".progress");
      for (const b of form.querySelectorAll("button[type=submit]")) b.disabled = true;
      if (!out) return;
      const started = Date.now();
      const tick = () => {
        out.textContent = form.dataset.progress + " 已用时 " + Math.floor((Date.now() - started) / 1000) + " 秒";
      };
      tick();
      setInterval(tick, 500);
    });
  }
  // The CSV import uploads with a progress bar, then shows the server's
  // row-by-row report in place of the page.
  const upload = document.querySelector("form#import");
  if (upload && window.XMLHttpRequest && window.FormData) {
    upload.addEventListener("submit", (event) => {
      const file = upload.querySelector("input[type=file]");
      if (!file.files.length) return; // the server names the missing file
      event.preventDefault();
      const bar = upload.querySelector("progress");
      const out = upload.querySelector(".progress");
      for (const b of upload.querySelectorAll("button[type=submit]")) b.disabled = true;
      bar.hidden = false;
      const xhr = new XMLHttpRequest();
      xhr.open("POST", upload.action);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) {
          bar.max = e.total; bar.value = e.loaded;
          out.textContent = "上传中 " + Math.round(100 * e.loaded / e.total) + "%";
        }
      };
      xhr.upload.onload = () => { bar.removeAttribute("value"); out.textContent = "已上传，服务器正在逐行检查…"; };
      xhr.onload = () => { document.open(); document.write(xhr.responseText); document.close(); };
      xhr.onerror = () => { out.textContent = "上传失败，请重试。"; for (const b of upload.querySelectorAll("button")) b.disabled = false; };
      xhr.send(new FormData(upload));
    });
  }
});
