"""Rights of an Open Clip Art Library file, decided from that file's own SVG RDF metadata. Fail closed.

Accepted only when the SVG parses safely, carries rdf:RDF metadata, and every licence statement in it
(cc:license, cc:License@about, dc/dcterms licence or rights URIs/text) names the SAME value, and that value
is on an exact allow-list of public-domain/CC0 URIs. An exact repeat of one allowed form (cc:license and
cc:License@about with the same URI, or two cc:Work blocks that agree) is not a conflict; two different
values (even "Public Domain" beside the PD URI), an empty value beside a PD URI, an empty licence, GPL,
anything else, malformed XML and XML that declares entities are rejected. Every other statement of the
licence block must agree too: a licence element's own text or other attributes are licence values (so
"all rights reserved" beside the PD URI is a conflict), and any cc:requires or cc:prohibits, a cc:permits
of anything but Reproduction/Distribution/DerivativeWorks, or any other statement inside cc:License is a
restriction that rejects the file (kept as evidence `restrictions`, present only when there is one). A licence-accepted file is then
rejected as a trademark when its path lies in a `logos` folder or its title, keywords, file name or
description name a logo/trademark (word match on logo, logos, logotype(s), trademark(s), or ™, ®, (tm)).

The package-level copyright file is never evidence. decide() stores everything it used as evidence, and
redecide(evidence) runs the same rule again from that evidence alone (the audit's defence in depth).
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any
from xml.parsers import expat

from pdd.rights.text import LicenceDecision

DECIDER = "openclipart-svg-rdf/1"
MAX_SVG_BYTES = 8 * 1024 * 1024  # the largest SVG in 0.18 is about 1.7 MB
MAX_XML_DEPTH = 256

RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC_NS = {"http://purl.org/dc/elements/1.1/", "http://purl.org/dc/elements/1.1"}
DCTERMS_NS = {"http://purl.org/dc/terms/", "http://purl.org/dc/terms"}
CC_NS = {"http://web.resource.org/cc/", "http://creativecommons.org/ns#", "http://creativecommons.org/ns"}


def _cc_variants(path: str) -> list[str]:
    return [f"{scheme}creativecommons.org/{path.rstrip('/')}{slash}" for scheme in ("http://", "https://") for slash in ("", "/")]


# exact strings (after strip) -> licence kind; the Public Domain Mark states PD, so it is kind pd
PD_ALLOW: dict[str, str] = {"http://web.resource.org/cc/PublicDomain": "pd"}
PD_ALLOW.update({u: "pd" for u in _cc_variants("licenses/publicdomain/")})
PD_ALLOW.update({u: "pd" for u in _cc_variants("publicdomain/mark/1.0/")})
PD_ALLOW.update({u: "cc0" for u in _cc_variants("publicdomain/zero/1.0/")})

_GPL = re.compile(r"(?i)(/licenses/[a-z-]*gpl|(?<![a-z])l?gpl(?![a-z])|gnu general public)")
# word match: no letter or digit directly before/after ("_", "-", ".", space separate words)
_TM_WORD = re.compile(r"(?i)(?<![^\W_])(logo(?:s|types?)?|trademarks?)(?![^\W_])")
_TM_SYMBOL = re.compile(r"[\u2122\u00ae]|\((?:tm|TM|Tm)\)")
TRADEMARK_DIRS = {"logos"}
# what cc:permits may name beside a public-domain licence (the Commons deed's three permissions)
PD_PERMITS = {f"{ns}{term}" for ns in CC_NS for term in ("Reproduction", "Distribution", "DerivativeWorks")}


# ---- safe XML ---------------------------------------------------------------------------------
class UnsafeXML(ValueError):
    pass


def _safe_parse(data: bytes) -> ET.Element:
    """pyexpat into an ElementTree, refusing entity/notation declarations and external entity
    references (defusedxml's policy); a DOCTYPE with only an external id is allowed (never fetched)."""
    tb = ET.TreeBuilder()
    px = expat.ParserCreate(None, "}")
    px.buffer_text = True
    depth = [0]

    def name(n: str) -> str:
        return "{" + n if "}" in n else n

    def start(tag, attrs):
        depth[0] += 1
        if depth[0] > MAX_XML_DEPTH:
            raise UnsafeXML(f"xml nesting deeper than {MAX_XML_DEPTH}")
        tb.start(name(tag), {name(k): v for k, v in attrs.items()})

    def end(tag):
        depth[0] -= 1
        tb.end(name(tag))

    def refuse(what):
        def handler(entity, *rest):
            raise UnsafeXML(f"{what} refused: {entity!r}")
        return handler

    px.StartElementHandler, px.EndElementHandler, px.CharacterDataHandler = start, end, tb.data
    px.EntityDeclHandler = refuse("entity declaration")
    px.UnparsedEntityDeclHandler = refuse("unparsed entity")
    px.NotationDeclHandler = refuse("notation declaration")
    px.ExternalEntityRefHandler = refuse("external entity")
    px.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        px.Parse(data, True)
    except expat.ExpatError as exc:
        raise ET.ParseError(str(exc)) from None
    return tb.close()


def _split(tag: Any) -> tuple[str, str]:
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _is(el: ET.Element, nsset: set, local: str) -> bool:
    ns, lo = _split(el.tag)
    return lo == local and ns in nsset


def _text(el: ET.Element | None) -> str:
    return "" if el is None else " ".join("".join(el.itertext()).split())


def _agent_name(el: ET.Element) -> str:
    """dc:creator: plain text, or cc:Agent/dc:title, or an rdf:resource/about URI."""
    direct = " ".join((el.text or "").split())
    if direct:
        return direct
    for sub in el.iter():
        if sub is not el and _is(sub, DC_NS, "title") and _text(sub):
            return _text(sub)
    for sub in el.iter():
        for attr in ("resource", "about"):
            if sub.get(f"{{{RDF_NS}}}{attr}"):
                return sub.get(f"{{{RDF_NS}}}{attr}").strip()
    return _text(el)


def _direct_text(el: ET.Element) -> str:
    """The element's own text (its text and its children's tails), not its children's."""
    return " ".join(" ".join([el.text or "", *(c.tail or "" for c in el)]).split())


def _statement_value(el: ET.Element) -> str:
    return (el.get(f"{{{RDF_NS}}}resource") or el.get(f"{{{RDF_NS}}}about") or _text(el)).strip()


def _own_statements(el: ET.Element, ns: str, lo: str, known: str) -> list[list[str]]:
    """A licence element's attributes other than KNOWN, and its own text beside them, as licence values."""
    out = [[f"{ns}{lo}@{k}", v.strip()] for k, v in sorted(el.attrib.items()) if k != f"{{{RDF_NS}}}{known}"]
    text = _direct_text(el)
    return out + ([[f"{ns}{lo}#text", text]] if text else [])


def _restrictions(el: ET.Element, ns: str, lo: str, parent_is_licence: bool) -> list[list[str]]:
    """[[source, value]] when EL restricts a public-domain licence: cc:requires, cc:prohibits, a cc:permits
    beyond PD_PERMITS, or any other statement inside cc:License."""
    if ns in CC_NS and lo in ("requires", "prohibits", "permits"):
        value = _statement_value(el)
        return [] if lo == "permits" and value in PD_PERMITS else [[f"{ns}{lo}", value]]
    return [[f"{ns}{lo}", _statement_value(el)]] if parent_is_licence else []


def read_rdf(svg_bytes: bytes) -> dict[str, Any]:
    """RDF / Dublin Core / Creative Commons metadata of an SVG. Never raises; `error` says why not.

    Keys: title, creator, description (str | None), keywords (list), licence_sources (list of
    [source, value] in document order, "" kept for empty values), restrictions (list of [source, value]
    in document order), has_metadata, error."""
    meta: dict[str, Any] = {"title": None, "creator": None, "description": None, "keywords": [],
                            "licence_sources": [], "restrictions": [], "has_metadata": False, "error": None}
    try:
        if len(svg_bytes) > MAX_SVG_BYTES:
            raise UnsafeXML(f"svg larger than {MAX_SVG_BYTES} bytes")
        root = _safe_parse(bytes(svg_bytes))
    except UnsafeXML as exc:
        meta["error"] = f"refused xml: {exc}"
        return meta
    except ET.ParseError as exc:
        meta["error"] = f"malformed xml: {exc}"
        return meta
    except Exception as exc:  # noqa: BLE001 - never raise on bad input
        meta["error"] = f"xml error: {type(exc).__name__}: {exc}"
        return meta
    try:
        rdfs = [el for el in root.iter() if _is(el, {RDF_NS}, "RDF")]
        if not rdfs:
            return meta
        meta["has_metadata"] = True
        sources: list[list[str]] = []
        works: list[ET.Element] = []
        restrictions: list[list[str]] = []
        for rdf in rdfs:
            licences = {id(el) for el in rdf.iter() if _split(el.tag)[0] in CC_NS and _split(el.tag)[1] == "License"}
            parents = {id(child): id(el) for el in rdf.iter() for child in el}
            for el in rdf.iter():
                ns, lo = _split(el.tag)
                restrictions += _restrictions(el, ns, lo, parents.get(id(el)) in licences)
                if ns in CC_NS and lo == "Work":
                    works.append(el)
                if lo == "license" and (ns in CC_NS or ns in DCTERMS_NS or ns in DC_NS):
                    value = el.get(f"{{{RDF_NS}}}resource")
                    if value is None:
                        nested = [s.get(f"{{{RDF_NS}}}about") or s.get(f"{{{RDF_NS}}}resource") for s in el.iter() if s is not el]
                        nested = [v for v in nested if v is not None]
                        value = nested[0] if nested else _text(el)
                    sources.append([f"{ns}license", value.strip()])
                    sources += _own_statements(el, ns, lo, "resource")
                elif ns in CC_NS and lo == "License":
                    sources.append([f"{ns}License@about", (el.get(f"{{{RDF_NS}}}about") or "").strip()])
                    sources += _own_statements(el, ns, lo, "about")
                elif lo == "rights" and (ns in DC_NS or ns in DCTERMS_NS):
                    # a URI or direct text is a licence statement; dc:rights/cc:Agent/dc:title is the holder
                    if el.get(f"{{{RDF_NS}}}resource") is not None:
                        sources.append([f"{ns}rights@resource", el.get(f"{{{RDF_NS}}}resource").strip()])
                    elif " ".join((el.text or "").split()):
                        sources.append([f"{ns}rights#text", " ".join(el.text.split())])
        work = works[0] if works else rdfs[0]
        for child in work:
            if _is(child, DC_NS, "title") and meta["title"] is None:
                meta["title"] = _text(child) or None
            elif _is(child, DC_NS, "creator") and meta["creator"] is None:
                meta["creator"] = _agent_name(child) or None
            elif _is(child, DC_NS, "description") and meta["description"] is None:
                meta["description"] = _text(child) or None
            elif _is(child, DC_NS, "subject"):
                items = [c for c in child.iter() if _is(c, {RDF_NS}, "li")]
                words = [_text(li) for li in items] if items else [_text(child)]
                meta["keywords"].extend(w for w in words if w)
        meta["licence_sources"], meta["restrictions"] = sources, restrictions
    except Exception as exc:  # noqa: BLE001
        meta["error"] = f"rdf error: {type(exc).__name__}: {exc}"
    return meta


# ---- decision -----------------------------------------------------------------------------------
def trademark_hits(evidence: dict) -> list[list[str]]:
    """[field, value, matched] for every trademark signal: a `logos` folder in the key or an alias
    path, or the word rule in the title, a keyword, the file name or the description."""
    hits: list[list[str]] = []
    paths = [evidence.get("key") or "", *(evidence.get("aliases") or [])]
    for path in paths:
        segs = path.split("/")
        hits += [["dir", path, s] for s in segs[:-1] if s.lower() in TRADEMARK_DIRS]
    fields = [("title", evidence.get("title"))] + [("keyword", k) for k in evidence.get("keywords") or []]
    fields += [("name", p.split("/")[-1]) for p in paths] + [("description", evidence.get("description"))]
    for name, value in fields:
        if value:
            m = _TM_WORD.search(value) or _TM_SYMBOL.search(value)
            if m:
                hits.append([name, value, m.group(0)])
    return hits


def _decide(ev: dict) -> LicenceDecision:
    if ev.get("error"):
        return LicenceDecision(False, "malformed", f"rejected: SVG metadata unreadable ({ev['error'][:160]})", ev)
    if not ev.get("has_metadata"):
        return LicenceDecision(False, "no-metadata", "rejected: SVG has no rdf:RDF metadata", ev)
    values = [v for _, v in ev.get("licence_sources") or []]
    if not values:
        return LicenceDecision(False, "no-licence", "rejected: SVG RDF names no licence", ev)
    distinct = sorted(set(values))
    if distinct == [""]:
        return LicenceDecision(False, "empty", "rejected: empty licence in SVG RDF", ev)
    if len(distinct) > 1:
        shown = " | ".join(repr(v) for v in distinct)
        return LicenceDecision(False, "conflict", f"rejected: conflicting licences in SVG RDF: {shown}", ev)
    lic = distinct[0]
    if lic not in PD_ALLOW:
        if _GPL.search(lic):
            return LicenceDecision(False, "gpl", f"rejected: GPL licence in SVG RDF: {lic}", ev)
        return LicenceDecision(False, "unknown", f"rejected: licence {lic[:120]!r} in SVG RDF is not public domain or CC0", ev)
    restrictions = ev.get("restrictions") or []
    if restrictions:
        shown = "; ".join(f"{re.split('[/#]', src)[-1]} {val[:80]!r}" for src, val in restrictions[:3])
        return LicenceDecision(False, "restricted", f"rejected: the SVG RDF licence block restricts the public-domain licence: {shown}", ev)
    hits = trademark_hits(ev)
    if hits:
        field, value, matched = hits[0]
        return LicenceDecision(False, "trademark", f"rejected: trademark: {matched!r} in {field} {value[:80]!r}", ev)
    return LicenceDecision(True, PD_ALLOW[lic], f"accepted: public domain in SVG RDF ({lic})", ev)


def decide(meta: dict, key: str, *, aliases: list[str] = (), svg: str | None = None, svg_sha256: str | None = None) -> LicenceDecision:
    """Decide one file from its own SVG's metadata (read_rdf) and its path `key` (category/.../name).
    The evidence holds everything the rule used, so redecide() can run it again."""
    ev = {"decider": DECIDER, "key": key, "aliases": sorted(aliases), "svg": svg, "svg_sha256": svg_sha256,
          "error": meta.get("error"), "has_metadata": bool(meta.get("has_metadata")),
          "licence_sources": [list(s) for s in meta.get("licence_sources") or []],
          "title": meta.get("title"), "keywords": list(meta.get("keywords") or []), "description": meta.get("description")}
    if meta.get("restrictions"):  # only when there is one: the evidence of every other file stays as it was
        ev["restrictions"] = [list(s) for s in meta["restrictions"]]
    return _decide(ev)


def redecide(evidence: dict) -> LicenceDecision | None:
    """Decide again from stored evidence (None if the evidence is not this decider's)."""
    if not isinstance(evidence, dict) or evidence.get("decider") != DECIDER:
        return None
    pairs = [evidence.get("licence_sources"), evidence.get("restrictions", [])]
    if not all(isinstance(p, list) and all(isinstance(x, list) and len(x) == 2 and all(isinstance(y, str) for y in x) for x in p)
               for p in pairs):
        return LicenceDecision(False, "unknown", "rejected: garbled openclipart evidence", evidence)
    return _decide(evidence)
