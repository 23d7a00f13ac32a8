// Progressive enhancement only: every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Controls that need a script are hidden until it runs; "Save" buttons it makes needless go.
  for (const el of document.querySelectorAll("[data-reveal], [data-show-content], [data-select-all]")) {
    el.hidden = false;
  }
  for (const el of document.querySelectorAll("[data-no-js-only]")) el.hidden = true;

  // Toggles apply at once.
  for (const box of document.querySelectorAll("[data-autosubmit]")) {
    box.addEventListener("change", () => box.form.requestSubmit());
  }

  // Without a script the form sends a hidden blur=off, then blur=on if the box is checked.
  // With one, the address says only what differs from the defaults.
  const searchForm = document.querySelector("[data-search-form]");
  const blurBox = searchForm && searchForm.querySelector("[data-blur-on]");
  if (blurBox) {
    searchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const params = new URLSearchParams(new FormData(searchForm));
      params.delete("blur");
      if (params.has("include_sensitive") && !blurBox.checked) params.set("blur", "off");
      window.location.assign(`${searchForm.action}?${params}`);
    });
  }

  // Search results: reveal one blurred card, bringing in its title and creator; hide it again.
  document.addEventListener("click", (event) => {
    const show = event.target.closest("[data-reveal]");
    if (show) {
      const card = show.closest("[data-card]");
      const slot = card.querySelector("[data-slot]");
      slot.replaceChildren(card.querySelector("template[data-details]").content.cloneNode(true));
      const hide = document.createElement("button");
      hide.type = "button";
      hide.className = "button button--small button--secondary";
      hide.textContent = "Hide";
      hide.dataset.hide = "";
      slot.append(hide);
      card.classList.remove("is-blurred");
      (slot.querySelector("a") || hide).focus();
      return;
    }
    const hide = event.target.closest("[data-hide]");
    if (hide) {
      const card = hide.closest("[data-card]");
      card.querySelector("[data-slot]").replaceChildren();
      card.classList.add("is-blurred");
      card.querySelector("[data-reveal]").focus();
    }
  });

  // One result: the safety wall gives way to the content, which is only now put in the page.
  const wall = document.querySelector("[data-wall]");
  if (wall) {
    const template = document.querySelector("template[data-content-template]");
    let content = null;
    wall.querySelector("[data-show-content]").addEventListener("click", () => {
      content = template.content.firstElementChild.cloneNode(true);
      wall.hidden = true;
      wall.after(content);
      const heading = content.querySelector("h1");
      heading.tabIndex = -1;
      heading.focus();
    });
    document.addEventListener("click", (event) => {
      if (content && event.target.closest("[data-hide-content]")) {
        event.preventDefault();
        content.remove();
        content = null;
        wall.hidden = false;
        wall.querySelector("[data-show-content]").focus();
      }
    });
  }

  // Reviewer images: blurred and grey until clicked.
  for (const button of document.querySelectorAll("[data-shield-toggle]")) {
    button.addEventListener("click", () => {
      const figure = button.closest("[data-shield]");
      const shielded = figure.classList.toggle("is-shielded");
      button.setAttribute("aria-pressed", String(!shielded));
      const hint = figure.querySelector("[data-shield-hint]");
      if (hint) hint.textContent = shielded ? "Click to reveal" : "Click to blur";
    });
  }

  // The queue: select every item at once.
  const all = document.querySelector("[data-select-all]");
  if (all) {
    const boxes = () => all.form.querySelectorAll("input[name=media_ids]:not(:disabled)");
    all.addEventListener("change", () => {
      for (const box of boxes()) box.checked = all.checked;
    });
  }
});
