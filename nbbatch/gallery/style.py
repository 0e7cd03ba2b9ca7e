"""The page's stylesheet, inline (no web fonts, nothing fetched). Its SHA-256 goes into the
page's Content-Security-Policy, so it must be byte-for-byte what the page carries.

Cards live in a CSS grid that reflows from one 1280 px screen to a phone; off-screen cards
skip layout and paint (content-visibility), which keeps a long contact sheet smooth.
"""

STYLE = """
:root {
  color-scheme: light dark;
  --bg: #f5f5f4; --card: #fff; --fg: #1c1917; --muted: #57534e; --line: #d6d3d1;
  --done: #15803d; --failed: #b91c1c; --pending: #a16207; --accent: #1d4ed8;
  --thumb-bg: #e7e5e4;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #1c1917; --card: #292524; --fg: #f5f5f4; --muted: #a8a29e; --line: #44403c;
    --done: #4ade80; --failed: #f87171; --pending: #facc15; --accent: #93c5fd;
    --thumb-bg: #0c0a09;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
header {
  position: sticky; top: 0; z-index: 2; background: var(--bg);
  border-bottom: 1px solid var(--line); padding: 12px 20px;
}
h1 { font-size: 1.25rem; margin: 0 0 4px; overflow-wrap: anywhere; }
.totals, .hint { margin: 0 0 8px; color: var(--muted); }
.totals b { color: var(--fg); }
.hint { font-size: .8rem; margin: 6px 0 0; }
kbd {
  border: 1px solid var(--line); border-radius: 3px; padding: 0 4px;
  font: .75rem ui-monospace, monospace;
}
.controls { display: flex; flex-wrap: wrap; gap: 8px 12px; align-items: center; }
.status-filter { display: flex; flex-wrap: wrap; gap: 4px; }
button, select, input {
  font: inherit; color: inherit; background: var(--card);
  border: 1px solid var(--line); border-radius: 6px; padding: 4px 10px;
}
button { cursor: pointer; }
button[aria-pressed="true"] {
  background: var(--accent); border-color: var(--accent); color: var(--bg);
}
input[type="search"] { flex: 1 1 220px; min-width: 0; max-width: 420px; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
#shown { color: var(--muted); font-size: .9rem; }
main { padding: 16px 20px 40px; }
.grid {
  list-style: none; margin: 0; padding: 0; display: grid; gap: 14px;
  grid-template-columns: repeat(auto-fill, minmax(220px, 1fr));
}
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  overflow: hidden; display: flex; flex-direction: column;
  content-visibility: auto; contain-intrinsic-size: auto 380px;
}
.card.failed { border-color: var(--failed); }
.thumb {
  display: block; width: 100%; aspect-ratio: 1; padding: 0; border: 0; border-radius: 0;
  background: var(--thumb-bg); color: var(--muted);
}
.thumb img { display: block; width: 100%; height: 100%; object-fit: contain; }
.placeholder {
  display: flex; width: 100%; height: 100%; align-items: center; justify-content: center;
  padding: 12px; text-align: center; font-weight: 600; overflow-wrap: anywhere;
}
.failed .placeholder { color: var(--failed); }
.pending .placeholder { color: var(--pending); }
.body { padding: 8px 10px 10px; display: flex; flex-direction: column; gap: 4px; }
.body p { margin: 0; overflow-wrap: anywhere; }
.head { display: flex; gap: 6px; align-items: baseline; justify-content: space-between; }
.id { font-weight: 600; font-family: ui-monospace, monospace; font-size: .85rem; }
.badge { font-size: .75rem; font-weight: 700; text-transform: uppercase; white-space: nowrap; }
.badge.done { color: var(--done); }
.badge.failed { color: var(--failed); }
.badge.pending { color: var(--pending); }
.prompt {
  display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 3; overflow: hidden;
}
.facts { color: var(--muted); font-size: .85rem; }
.problem { font-size: .85rem; }
.failed .problem strong { color: var(--failed); }
.pending .problem strong { color: var(--pending); }
#empty { color: var(--muted); }
#more { height: 1px; }
dialog {
  width: min(1100px, 96vw); max-height: 94vh; padding: 0; border: 1px solid var(--line);
  border-radius: 10px; background: var(--card); color: var(--fg);
}
dialog::backdrop { background: rgb(0 0 0 / .7); }
.viewer-bar {
  display: flex; gap: 8px; align-items: center; padding: 8px 12px;
  border-bottom: 1px solid var(--line); position: sticky; top: 0; background: var(--card);
}
.viewer-bar .spacer { flex: 1; }
.viewer-bar a { color: var(--accent); }
.viewer-body { display: grid; grid-template-columns: minmax(0, 3fr) minmax(240px, 2fr); }
.viewer-media {
  background: var(--thumb-bg); display: flex; align-items: center; justify-content: center;
  min-height: 240px;
}
.viewer-media img { display: block; max-width: 100%; max-height: 80vh; object-fit: contain; }
.viewer-media .placeholder { min-height: 240px; }
.viewer-info { padding: 12px 16px; display: flex; flex-direction: column; gap: 8px; }
.viewer-info p { margin: 0; overflow-wrap: anywhere; }
.viewer-info .prompt { display: block; -webkit-line-clamp: none; white-space: pre-wrap; }
@media (max-width: 640px) {
  header { position: static; padding: 10px 12px; }
  main { padding: 12px; }
  .grid { grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
  .viewer-body { grid-template-columns: 1fr; }
  .hint { display: none; }
}
"""
