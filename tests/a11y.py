"""Accessibility checks that the desk's and the chat's browser tests share, run by the page's own
Chromium: the page's outline (language, title, headings, landmarks, labels, names), WCAG AA text
contrast computed from the page's CSS colours, and content that overflows sideways (reflow at 320 px).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

_OUTLINE = """() => {
  const named = (el) => (el.getAttribute("aria-label") || el.getAttribute("aria-labelledby")
                         || el.textContent.trim() || el.title) ? true : false;
  const controls = [...document.querySelectorAll("input:not([type=hidden]), textarea, select")];
  return {
    lang: document.documentElement.lang,
    title: document.title,
    headings: [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")].map((h) => Number(h.tagName[1])),
    main: document.querySelectorAll("main").length,
    nav: document.querySelectorAll("nav").length,
    unlabelled: controls.filter((c) => !c.labels.length && !c.getAttribute("aria-label")
                                       && !c.getAttribute("aria-labelledby")).map((c) => c.outerHTML),
    unnamed: [...document.querySelectorAll("button, a[href]")].filter((b) => !named(b)).map((b) => b.outerHTML),
    outside: [...document.body.children].filter((el) => el.textContent.trim()
      && !el.matches("header, main, nav, footer, script, [role], form[aria-label]")).map((el) => el.tagName),
  };
}"""

_CONTRAST = """() => {
  const rgba = (text) => (text.match(/[\\d.]+/g) || []).map(Number).concat([1]).slice(0, 4);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const over = (top, bottom) => top.slice(0, 3).map((v, i) => v * top[3] + bottom[i] * (1 - top[3]));
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] === 1) break;
    }
    return layers.reverse().reduce((under, c) => over(c, under), [255, 255, 255]);
  };
  const opacity = (el) => {
    let o = 1;
    for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
    return o;
  };
  const failures = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el.getClientRects().length) continue;
    if (el.closest(":disabled")) continue;  // WCAG exempts inactive controls
    const style = getComputedStyle(el);
    const bg = background(el);
    const color = rgba(style.color);
    const fg = over([color[0], color[1], color[2], color[3] * opacity(el)], bg);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    const what = `${el.tagName}.${el.className}: ${node.textContent.trim().slice(0, 30)}`;
    if (ratio < (large ? 3 : 4.5)) failures.push(`${ratio.toFixed(2)} ${what}`);
  }
  return failures;
}"""

_OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll("body *")].filter((el) => {
    const r = el.getBoundingClientRect();
    const spills = el.clientWidth && el.scrollWidth > el.clientWidth + 1
                   && getComputedStyle(el).overflowX === "visible";
    return r.width && (r.right > width + 1 || r.left < -1 || spills) && !el.closest("table");
  });
  return { scroll: document.documentElement.scrollWidth, width,
           wide: wide.map((el) => `${el.tagName}.${el.className}`).slice(0, 8) };
}"""


async def outline(page: Any) -> dict[str, Any]:
    """The page's language, title, heading levels in order, landmark counts and its unlabelled controls."""
    result: dict[str, Any] = await page.evaluate(_OUTLINE)
    return result


async def low_contrast(page: Any) -> list[str]:
    """Visible text below WCAG AA contrast (4.5:1, 3:1 when large) against its painted background."""
    result: list[str] = await page.evaluate(_CONTRAST)
    return result


async def overflowing(page: Any) -> dict[str, Any]:
    """How far the page scrolls sideways and which elements stick out of it or have text spilling out of
    them (data tables may scroll)."""
    result: dict[str, Any] = await page.evaluate(_OVERFLOW)
    return result


def headings_in_order(levels: list[int]) -> bool:
    """One h1, first, and no level skipped on the way down."""
    return levels.count(1) == 1 and levels[0] == 1 and all(b <= a + 1 for a, b in pairwise(levels))
