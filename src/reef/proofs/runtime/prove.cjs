// reef.proofs: run snarkjs's Groth16 fullProve once.
// stdin: {"input": {...}, "wasm": path, "zkey": path}; stdout: {"proof": ..., "publicSignals": [...]}
// On a witness failure (inputs that violate the circuit) it exits 3 with the reason on stderr.
"use strict";
const path = require("path");
const snarkjs = require(path.join(process.cwd(), "node_modules", "snarkjs"));

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  let result;
  try {
    result = await snarkjs.groth16.fullProve(request.input, request.wasm, request.zkey);
  } catch (err) {
    const message = String(err && err.message ? err.message : err);
    process.stderr.write(message);
    // circom's witness calculator reports violated constraints as "Assert Failed" / "Error in
    // template"; a wrong signal name or count as "Not enough values" / "Signal not found".
    const invalid = /Assert Failed|Error in template|Not enough values|Too many values|Signal not found|Invalid number/.test(message);
    process.exit(invalid ? 3 : 2);
  }
  process.stdout.write(JSON.stringify({ proof: result.proof, publicSignals: result.publicSignals }));
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(2);
});
