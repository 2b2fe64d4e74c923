// Injected into a copy of the report by test_nightly.sh: once the page and
// every picture have loaded (or failed to), lists the broken pictures, the
// maps of phi that loaded, the sections and the rows of the linear probe's
// table, in a <pre> that chromium --dump-dom prints.
addEventListener("load", () => {
  const loaded = i => i.complete && i.naturalWidth > 0;
  const bad = [...document.images].filter(i => !loaded(i)).map(i => i.getAttribute("src"));
  const maps = [...document.images].filter(i => /^plots\/map_/.test(i.getAttribute("src")) && loaded(i));
  const probe = [...document.querySelectorAll("table")].find(t => t.caption && /^linear probe/.test(t.caption.textContent));
  const cells = r => [...r.cells].map(c => c.textContent).join(",");
  const pre = document.createElement("pre");
  pre.id = "semrep-check";
  pre.textContent = "IMAGES " + document.images.length + " BROKEN " + bad.length + " " + bad.join(" ") +
      "\nMAPS " + maps.length +
      "\nSECTIONS " + [...document.querySelectorAll("h2")].map(h => h.textContent).join("|") +
      "\nPROBE " + (probe ? [...probe.rows].map(cells).join(";") : "none") +
      "\n" + [...document.querySelectorAll("#findings li")].map(li => "FINDING " + li.textContent).join("\n");
  document.body.appendChild(pre);
});
