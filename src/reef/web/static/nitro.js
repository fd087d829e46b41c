// reef dashboard: AWS Nitro attestation documents verified in the browser itself.
//
// The page shows this verdict next to the server's (reef.attestation.verify), so that a user
// need not trust the server that serves the page: the document's CBOR is decoded here, the
// COSE_Sign1 signature (ES384) is checked with WebCrypto over its Sig_structure, and the
// certificate chain is walked from the document's leaf up to a pinned root (AWS Nitro Root-G1's
// public key is written below). The checks run in the same order as the server's (signature,
// root, chain links, validity at the document's time, then at "now" and freshness in live mode),
// so the two name the same reason for a rejection. Not checked here: certificate extensions
// (basicConstraints, keyUsage, critical ones), which the server checks.
//
// Small by design (no build step, no dependency): a CBOR decoder for the subset Nitro uses and
// a DER walker for the X.509 fields the chain needs.
"use strict";

(function (global) {
  const AWS_ROOT = {
    name: "aws",
    // AWS Nitro Enclaves Root-G1 (SHA-256 of the certificate 641a0321…bb5b): its P-384 point x||y.
    publicKey:
      "fc0254eba608c1f36870e29ada90be46383292736e894bfff672d989444b5051e534a4b1f6dbe3c0bc581a32" +
      "b7b176070ede12d69a3fea211b66e752cf7dd1dd095f6f1370f4170843d9dc100121e4cf63012809664487c9" +
      "796284304dc53ff4",
    insecure: false,
  };
  const MAX_AGE_MS = 300000;
  const MAX_FUTURE_SKEW_MS = 60000;

  class Rejected extends Error {
    constructor(reason, message) {
      super(message);
      this.reason = reason;
    }
  }

  // ---------------------------------------------------------------- bytes

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function fromHex(text) {
    if (text.length % 2 || /[^0-9a-fA-F]/.test(text)) throw new Rejected("decode", "not hex");
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  function concat(parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  // Pasted text: hex (0x optional) or base64, whitespace ignored.
  function decodeEvidence(text) {
    const cleaned = text.replace(/\s+/g, "").replace(/^0x/i, "");
    if (!cleaned) throw new Rejected("decode", "no document given");
    if (/^[0-9a-fA-F]+$/.test(cleaned) && cleaned.length % 2 === 0) return fromHex(cleaned);
    try {
      const raw = atob(cleaned.replace(/-/g, "+").replace(/_/g, "/"));
      return Uint8Array.from(raw, (c) => c.charCodeAt(0));
    } catch (e) {
      throw new Rejected("decode", "the document is neither hex nor base64");
    }
  }

  // ---------------------------------------------------------------- CBOR (RFC 8949 subset)

  function cborDecode(bytes) {
    let at = 0;
    const need = (n) => {
      if (at + n > bytes.length) throw new Rejected("decode", "truncated CBOR");
    };
    // An argument past 2**53 - 1 is exact only as a BigInt: a length that large is refused, an
    // integer value is kept as a BigInt (Python decodes any uint64, and the two verdicts must
    // agree on a document that carries one).
    function argument(info) {
      if (info < 24) return info;
      const size = { 24: 1, 25: 2, 26: 4, 27: 8 }[info];
      if (!size) throw new Rejected("decode", "indefinite or reserved CBOR length");
      need(size);
      let value = 0n;
      for (let i = 0; i < size; i++) value = value * 256n + BigInt(bytes[at + i]);
      at += size;
      return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
    }
    function length(info) {
      const value = argument(info);
      if (typeof value !== "number") throw new Rejected("decode", "CBOR length too large");
      return value;
    }
    function item(depth) {
      if (depth > 16) throw new Rejected("decode", "CBOR nested too deeply");
      need(1);
      const head = bytes[at++];
      const major = head >> 5;
      const info = head & 31;
      if (major === 7) {
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22 || info === 23) return null;
        throw new Rejected("decode", "unsupported CBOR simple value or float");
      }
      if (major === 0 || major === 1) {
        const n = argument(info);
        if (major === 0) return n;
        return typeof n === "number" && n < Number.MAX_SAFE_INTEGER ? -1 - n : -1n - BigInt(n);
      }
      const n = length(info);
      switch (major) {
        case 2:
          need(n);
          at += n;
          return bytes.subarray(at - n, at);
        case 3:
          need(n);
          at += n;
          return new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(at - n, at));
        case 4: {
          const list = [];
          for (let i = 0; i < n; i++) list.push(item(depth + 1));
          return list;
        }
        case 5: {
          const map = new Map();
          for (let i = 0; i < n; i++) {
            const key = item(depth + 1);
            map.set(key, item(depth + 1));
          }
          return map;
        }
        case 6:
          return { tag: n, value: item(depth + 1) };
      }
      throw new Rejected("decode", "bad CBOR");
    }
    const value = item(0);
    if (at !== bytes.length) throw new Rejected("decode", "bytes after the CBOR item");
    return value;
  }

  function cborBytesHeader(major, n) {
    const m = major << 5;
    if (n < 24) return Uint8Array.of(m | n);
    if (n < 0x100) return Uint8Array.of(m | 24, n);
    if (n < 0x10000) return Uint8Array.of(m | 25, n >> 8, n & 255);
    return Uint8Array.of(m | 26, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255);
  }

  function cborBstr(b) {
    return concat([cborBytesHeader(2, b.length), b]);
  }

  // COSE_Sign1's Sig_structure: ["Signature1", protected, external_aad = h'', payload].
  function sigStructure(protectedBytes, payload) {
    const context = new TextEncoder().encode("Signature1");
    return concat([
      Uint8Array.of(0x84),
      cborBytesHeader(3, context.length),
      context,
      cborBstr(protectedBytes),
      cborBstr(new Uint8Array(0)),
      cborBstr(payload),
    ]);
  }

  // ---------------------------------------------------------------- DER / X.509

  function der(bytes, start, end) {
    if (start + 2 > end) throw new Rejected("chain", "truncated DER");
    const tag = bytes[start];
    let len = bytes[start + 1];
    let header = 2;
    if (len & 0x80) {
      const count = len & 0x7f;
      if (count < 1 || count > 3 || start + 2 + count > end) throw new Rejected("chain", "bad DER length");
      len = 0;
      for (let i = 0; i < count; i++) len = len * 256 + bytes[start + 2 + i];
      header += count;
    }
    const body = start + header;
    if (body + len > end) throw new Rejected("chain", "DER runs past its container");
    return { tag, start, body, end: body + len };
  }

  function children(bytes, node) {
    const out = [];
    for (let at = node.body; at < node.end; ) {
      const child = der(bytes, at, node.end);
      out.push(child);
      at = child.end;
    }
    return out;
  }

  function derTime(bytes, node) {
    const text = new TextDecoder().decode(bytes.subarray(node.body, node.end));
    let m;
    if (node.tag === 0x17 && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text))) {
      const yy = +m[1];
      return Date.UTC(yy < 50 ? 2000 + yy : 1900 + yy, +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
    }
    if (node.tag === 0x18 && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text))) {
      return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
    }
    throw new Rejected("chain", "unreadable certificate time " + text);
  }

  const CURVES = {
    "2b81040022": { name: "P-384", size: 48 },
    "2a8648ce3d030107": { name: "P-256", size: 32 },
  };
  const HASHES = { "2a8648ce3d040302": "SHA-256", "2a8648ce3d040303": "SHA-384", "2a8648ce3d040304": "SHA-512" };

  // What the chain walk needs of one certificate.
  function parseCertificate(bytes, label) {
    try {
      const cert = der(bytes, 0, bytes.length);
      const [tbs, alg, sig] = children(bytes, cert);
      const fields = children(bytes, tbs);
      const f = fields[0].tag === 0xa0 ? fields.slice(1) : fields;
      const [, , issuer, validity, subject, spki] = f;
      const [notBefore, notAfter] = children(bytes, validity).map((t) => derTime(bytes, t));
      const [spkiAlg, point] = children(bytes, spki);
      const curveOid = children(bytes, spkiAlg)[1];
      const curve = CURVES[hex(bytes.subarray(curveOid.body, curveOid.end))];
      const algOid = children(bytes, alg)[0];
      return {
        label,
        tbs: bytes.subarray(tbs.start, tbs.end),
        hash: HASHES[hex(bytes.subarray(algOid.body, algOid.end))],
        signature: bytes.subarray(sig.body + 1, sig.end), // BIT STRING: skip the unused-bits byte
        issuer: bytes.subarray(issuer.start, issuer.end),
        subject: bytes.subarray(subject.start, subject.end),
        notBefore,
        notAfter,
        spki: bytes.subarray(spki.start, spki.end),
        point: bytes.subarray(point.body + 1, point.end), // 04 || x || y
        curve,
      };
    } catch (e) {
      if (e instanceof Rejected) throw new Rejected("certificate", label + ": " + e.message);
      throw new Rejected("certificate", label + " is not a well-formed certificate");
    }
  }

  // ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) as WebCrypto's r||s.
  function rawSignature(sigDer, size) {
    const seq = der(sigDer, 0, sigDer.length);
    const parts = children(sigDer, seq).map((n) => {
      let v = sigDer.subarray(n.body, n.end);
      while (v.length > size && v[0] === 0) v = v.subarray(1);
      if (v.length > size) throw new Rejected("chain", "signature integer too long");
      const out = new Uint8Array(size);
      out.set(v, size - v.length);
      return out;
    });
    return concat(parts);
  }

  async function importKey(cert) {
    if (!cert.curve) throw new Rejected("certificate", cert.label + " does not hold a P-256/P-384 key");
    try {
      return await crypto.subtle.importKey("spki", cert.spki, { name: "ECDSA", namedCurve: cert.curve.name }, false, ["verify"]);
    } catch (e) {
      throw new Rejected("certificate", cert.label + " holds an unusable key");
    }
  }

  async function signedBy(child, issuer, issuerKey) {
    if (!equal(child.issuer, issuer.subject)) {
      throw new Rejected("chain", child.label + "'s issuer is not " + issuer.label + "'s subject");
    }
    if (!child.hash) throw new Rejected("chain", child.label + " is not signed with ECDSA-SHA2");
    let ok = false;
    try {
      const sig = rawSignature(child.signature, issuer.curve.size);
      ok = await crypto.subtle.verify({ name: "ECDSA", hash: child.hash }, issuerKey, sig, child.tbs);
    } catch (e) {
      ok = false;
    }
    if (!ok) throw new Rejected("chain", child.label + " is not signed by " + issuer.label);
  }

  // A time in milliseconds as ISO 8601, or said in words when no Date can hold it (a hostile
  // document's timestamp may lie past year 275 760, where toISOString throws).
  function isoTime(ms) {
    const date = new Date(Number(ms));
    return Number.isNaN(date.getTime()) ? `${ms} ms, past any calendar date` : date.toISOString();
  }

  function checkValidity(chain, atMs, instant) {
    for (const c of chain) {
      if (atMs < c.notBefore) {
        throw new Rejected("expired", `${c.label} is not valid before ${isoTime(c.notBefore)}; ${instant} is ${isoTime(atMs)}`);
      }
      // Certificate times have whole seconds; the bound is inclusive to the end of that second.
      if (atMs > c.notAfter + 999) {
        throw new Rejected("expired", `${c.label} expired at ${isoTime(c.notAfter)}; ${instant} is ${isoTime(atMs)}`);
      }
    }
  }

  // ---------------------------------------------------------------- the document

  function field(map, name) {
    return map instanceof Map ? map.get(name) : undefined;
  }

  function bytesOrEmpty(value) {
    return value instanceof Uint8Array ? value : new Uint8Array(0);
  }

  function parseDocument(bytes) {
    let cose = cborDecode(bytes);
    if (cose && typeof cose === "object" && "tag" in cose) {
      if (cose.tag !== 18) throw new Rejected("decode", "not a COSE_Sign1 (tag " + cose.tag + ")");
      cose = cose.value;
    }
    if (!Array.isArray(cose) || cose.length !== 4) throw new Rejected("decode", "not a COSE_Sign1 array");
    const [protectedBytes, , payload, signature] = cose;
    if (!(protectedBytes instanceof Uint8Array) || !(payload instanceof Uint8Array) || !(signature instanceof Uint8Array)) {
      throw new Rejected("decode", "COSE_Sign1 fields of the wrong type");
    }
    const header = protectedBytes.length ? cborDecode(protectedBytes) : new Map();
    if (field(header, 1) !== -35) throw new Rejected("decode", "the document is not signed with ES384");
    const doc = cborDecode(payload);
    if (!(doc instanceof Map)) throw new Rejected("decode", "the payload is not a map");
    const pcrs = field(doc, "pcrs");
    const certificate = field(doc, "certificate");
    const cabundle = field(doc, "cabundle");
    const timestamp = field(doc, "timestamp");
    const integral = typeof timestamp === "number" || typeof timestamp === "bigint";
    if (!(pcrs instanceof Map) || !(certificate instanceof Uint8Array) || !Array.isArray(cabundle) || !integral) {
      throw new Rejected("decode", "the payload lacks pcrs, certificate, cabundle or timestamp");
    }
    const pcrHex = {};
    for (const [k, v] of pcrs) {
      if (typeof k !== "number" || !(v instanceof Uint8Array)) throw new Rejected("decode", "a malformed PCR");
      pcrHex[String(k)] = hex(v);
    }
    return {
      protectedBytes,
      payload,
      signature,
      moduleId: String(field(doc, "module_id") || ""),
      // Past 2**53 ms (year 285 000) a Number is close enough to compare with any validity.
      timestampMs: Number(timestamp),
      pcrs: pcrHex,
      certificate,
      cabundle,
      publicKey: hex(bytesOrEmpty(field(doc, "public_key"))),
      userData: hex(bytesOrEmpty(field(doc, "user_data"))),
      nonce: hex(bytesOrEmpty(field(doc, "nonce"))),
    };
  }

  async function imageId(pcrs) {
    const zero = "00".repeat(48);
    const parts = [Uint8Array.of(0, 1, 0, 7)];
    for (const i of ["0", "1", "2", "16"]) parts.push(fromHex(pcrs[i] || zero));
    return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", concat(parts))));
  }

  // Verify raw document bytes. options: {mode: "replay"|"live", nowMs, roots: [{name,
  // publicKey (hex x||y), insecure}]}. Never throws: the verdict carries the reason.
  async function verifyDocument(bytes, options) {
    const opts = options || {};
    const mode = opts.mode || "replay";
    const roots = [AWS_ROOT, ...(opts.roots || [])];
    const verdict = { ok: false, reason: "", message: "", mode, root: null, document: null, imageId: "" };
    try {
      const doc = parseDocument(bytes);
      verdict.document = {
        module_id: doc.moduleId,
        timestamp_ms: doc.timestampMs,
        pcrs: doc.pcrs,
        public_key: doc.publicKey,
        user_data: doc.userData,
        nonce: doc.nonce,
      };
      // 1. the COSE signature, with the leaf's key
      const leaf = parseCertificate(doc.certificate, "the leaf certificate");
      const leafKey = await importKey(leaf);
      if (leaf.curve.name !== "P-384") throw new Rejected("certificate", "the leaf key cannot sign ES384");
      const signed = await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-384" }, leafKey, doc.signature, sigStructure(doc.protectedBytes, doc.payload));
      if (!signed) throw new Rejected("signature", "the COSE signature does not verify under the leaf certificate");
      // 2. the root: cabundle[0] must carry a pinned root's key
      if (!doc.cabundle.length) throw new Rejected("chain", "the document's cabundle is empty");
      const chain = doc.cabundle.map((c, i) => parseCertificate(c, i === 0 ? "cabundle[0] (root)" : `cabundle[${i}]`));
      const point = hex(chain[0].point.subarray(1));
      const root = roots.find((r) => r.publicKey.toLowerCase() === point);
      if (!root) throw new Rejected("root", "the document's chain does not end at a pinned root");
      verdict.root = { name: root.name, insecure: !!root.insecure };
      // 3. each link, root first, then the leaf
      const all = [...chain, leaf];
      for (let i = 1; i < all.length; i++) {
        await signedBy(all[i], all[i - 1], await importKey(all[i - 1]));
      }
      // 4. validity at the document's time; live mode: now too, and freshness
      checkValidity(all, doc.timestampMs, "the document time");
      if (mode === "live") {
        const now = opts.nowMs === undefined ? Date.now() : opts.nowMs;
        checkValidity(all, now, "now");
        if (doc.timestampMs - now > MAX_FUTURE_SKEW_MS) throw new Rejected("future", "the document is dated in the future");
        if (now - doc.timestampMs > MAX_AGE_MS) throw new Rejected("stale", `the document is ${now - doc.timestampMs} ms old, more than the ${MAX_AGE_MS} ms allowed`);
      }
      verdict.imageId = await imageId(doc.pcrs);
      verdict.ok = true;
      verdict.message = "accepted";
    } catch (e) {
      verdict.reason = e instanceof Rejected ? e.reason : "decode";
      verdict.message = e.message || String(e);
    }
    return verdict;
  }

  global.reefNitro = { verifyDocument, decodeEvidence, cborDecode, parseCertificate, hex, fromHex, isoTime, AWS_ROOT };
})(window);
