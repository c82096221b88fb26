// The merchandiser's page works without JavaScript; this only adds small conveniences.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // actions that change what every customer is served ask once more
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
