// The merchandiser's page works without JavaScript; this only adds small conveniences.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // "compare with" lists apply as soon as one is chosen (the button stays for keyboards)
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.requestSubmit());
  }
  // actions that change what every customer is served ask once more
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
