// Injected into a copy of the report by test_nightly.sh: once the page and
// every picture have loaded (or failed to), lists the broken pictures and the
// sections, in a <pre> that chromium --dump-dom prints.
addEventListener("load", () => {
  const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const pre = document.createElement("pre");
  pre.id = "semrep-check";
  pre.textContent = "IMAGES " + document.images.length + " BROKEN " + bad.length + " " + bad.join(" ") +
      "\nSECTIONS " + [...document.querySelectorAll("h2")].map(h => h.textContent).join("|");
  document.body.appendChild(pre);
});
