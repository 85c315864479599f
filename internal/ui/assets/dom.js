// DOM helpers. Every text goes in through text nodes, never as HTML, so
// nothing the API returns can become markup (the page's Trusted Types
// policy forbids string-to-HTML sinks anyway).

const SVG = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// el("td", {class: "num"}, "3") builds an HTML element.
export function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// svg("rect", {x: 1}) builds an SVG element.
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

// Attributes the user changes and a refresh must keep.
const userState = { DETAILS: ["open"] };

function syncAttrs(from, to) {
  const keep = userState[from.tagName] || [];
  for (const a of [...from.attributes]) {
    if (!to.hasAttribute(a.name) && !keep.includes(a.name)) from.removeAttribute(a.name);
  }
  for (const a of [...to.attributes]) {
    if (from.getAttribute(a.name) !== a.value) from.setAttribute(a.name, a.value);
  }
}

function same(a, b) {
  if (a.nodeType !== b.nodeType) return false;
  if (a.nodeType !== Node.ELEMENT_NODE) return true;
  return a.tagName === b.tagName && a.getAttribute("data-key") === b.getAttribute("data-key");
}

// morph makes from's children equal to to's, keeping every element that
// stays in place: focus, scroll positions and opened details survive a
// refresh, and screen readers are not sent back to the top.
export function morph(from, to) {
  syncAttrs(from, to);
  morphChildren(from, to);
}

function morphChildren(from, to) {
  const fc = [...from.childNodes];
  const tc = [...to.childNodes];
  tc.forEach((b, i) => {
    const a = fc[i];
    if (!a) {
      from.append(b);
    } else if (!same(a, b)) {
      from.replaceChild(b, a);
    } else if (a.nodeType === Node.ELEMENT_NODE) {
      morph(a, b);
    } else if (a.nodeValue !== b.nodeValue) {
      a.nodeValue = b.nodeValue;
    }
  });
  for (let i = fc.length - 1; i >= tc.length; i--) fc[i].remove();
}

// render replaces the content of the element with id by children, morphing.
export function render(id, ...children) {
  const target = document.getElementById(id);
  const next = target.cloneNode(false);
  build(next, {}, children);
  morphChildren(target, next);
}

export function badge(kind, label) {
  return el("span", { class: "badge " + kind }, label);
}
