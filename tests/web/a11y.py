"""The browser accessibility check every page test runs: labels, WCAG AA contrast, no console errors.

``check(page, "what")`` asserts, in the page as Chromium renders it now:

- every form control (input other than hidden, select, textarea) has a name from a ``<label>``,
  ``aria-label`` or ``aria-labelledby``, and every button a name (its text, ``aria-label`` or
  ``aria-labelledby``);
- every visible text meets WCAG 2.x AA contrast against what is behind it: 4.5:1, or 3:1 for large text
  (24 px, or 18.66 px bold). Both colours come from the computed styles: the text's colour (its alpha
  over the background) and the background composed from the element's own background up through its
  ancestors to the page's white canvas. Disabled controls are exempt (WCAG 1.4.3), as is text that is
  clipped to a pixel for screen readers only;
- the page logged no console error and threw no uncaught exception (``page.console_errors``, filled by
  the ``page`` fixture of tests/web/conftest.py). ``allow`` names console messages a test expects (a 400
  it provoked on purpose).
"""

from __future__ import annotations

from collections.abc import Iterable

_SCRIPT = r"""
() => {
  const problems = [];
  const describe = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    else if (el.className && typeof el.className === 'string') s += '.' + el.className.trim().split(/\s+/).join('.');
    const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 40);
    return text ? `${s} "${text}"` : s;
  };
  const byIds = (ids) => (ids || '').split(/\s+/).filter(Boolean)
    .map((id) => document.getElementById(id)).filter(Boolean)
    .map((e) => (e.getAttribute('aria-label') || e.textContent || '').trim()).join(' ').trim();
  const accessibleName = (el) => {
    const aria = (el.getAttribute('aria-label') || '').trim();
    if (aria) return aria;
    const labelled = byIds(el.getAttribute('aria-labelledby'));
    if (labelled) return labelled;
    if (el.labels) {
      const text = Array.from(el.labels).map((l) => (l.textContent || '').trim()).join(' ').trim();
      if (text) return text;
    }
    return '';
  };

  // 1. Names of form controls and buttons.
  for (const el of document.querySelectorAll('input, select, textarea')) {
    const type = (el.getAttribute('type') || '').toLowerCase();
    if (type === 'hidden') continue;
    if (['submit', 'button', 'reset'].includes(type)) {
      if (!(el.value || '').trim() && !accessibleName(el)) problems.push(`button without a name: ${describe(el)}`);
      continue;
    }
    if (!accessibleName(el)) problems.push(`form control without a label: ${describe(el)} (name=${el.name || ''})`);
  }
  for (const el of document.querySelectorAll('button')) {
    if (!(el.textContent || '').trim() && !accessibleName(el)) problems.push(`button without a name: ${describe(el)}`);
  }

  // 2. Contrast of every visible text.
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {  // top (with alpha) composed over an opaque bottom
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const style = getComputedStyle(e);
      const bg = parse(style.backgroundColor);
      if (bg && bg[3] > 0) layers.push(bg);
      if (bg && bg[3] >= 1) break;
    }
    let color = [255, 255, 255, 1];  // the canvas
    for (let i = layers.length - 1; i >= 0; i--) color = over(layers[i], color);
    return color;
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [l1, l2] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (l1 + 0.05) / (l2 + 0.05);
  };
  const skip = 'script, style, noscript, template, title, option, select, .xterm, canvas, svg';
  const seen = new Set();
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest(skip)) continue;
    const ownText = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    const isField = el.matches('input:not([type=hidden]):not([type=checkbox]):not([type=radio]):not([type=file]), textarea');
    if (!ownText && !(isField && (el.value || el.placeholder))) continue;
    if (el.closest(':disabled, [aria-disabled=true]')) continue;  // inactive controls are exempt
    const rect = el.getBoundingClientRect();
    if (rect.width <= 1 || rect.height <= 1) continue;  // not shown, or for screen readers only
    const style = getComputedStyle(el);
    if (style.visibility !== 'visible' || !el.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
    const bg = background(el);
    const fgRaw = parse(style.color);
    if (!fgRaw) continue;
    const fg = over(fgRaw, bg);
    const size = parseFloat(style.fontSize);
    const bold = parseInt(style.fontWeight, 10) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    const needed = large ? 3 : 4.5;
    const r = ratio(fg, bg);
    if (r + 1e-6 < needed) {
      const key = `${style.color} on ${bg.slice(0, 3).map(Math.round).join(',')}`;
      const line = `contrast ${r.toFixed(2)}:1 < ${needed}:1 (${key}, ${size}px${bold ? ' bold' : ''}): ${describe(el)}`;
      if (!seen.has(key + describe(el))) { seen.add(key + describe(el)); problems.push(line); }
    }
  }
  return problems;
}
"""


def problems(page) -> list[str]:
    """What the page fails now (labels and contrast), one line each."""
    return page.evaluate(_SCRIPT)


def check(page, what: str, *, allow: Iterable[str] = ()) -> None:
    """Assert the page has labelled controls, AA contrast and no console error (bar those containing ``allow``)."""
    allowed = tuple(allow)
    found = problems(page)
    errors = [e for e in getattr(page, "console_errors", []) if not any(a in e for a in allowed)]
    found += [f"console error: {e}" for e in errors]
    assert not found, f"accessibility of {what} ({page.url}):\n  " + "\n  ".join(found[:40])
