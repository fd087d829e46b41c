// Reads JSON input ({"numbers": [...]}) and answers JSON: their count, sum and mean.
// Bad input gets a JSON error with HTTP status 400 (the output is still the body).
// Run it: reef fn dev examples/serverless/json-input --input '{"numbers": [1, 2, 3.5]}'
export default {
  async fetch(request, env) {
    let input;
    try {
      input = JSON.parse(await request.text());
    } catch (e) {
      return Response.json({ error: "input is not JSON: " + e.message }, { status: 400 });
    }
    const numbers = input && input.numbers;
    if (!Array.isArray(numbers) || !numbers.every((n) => typeof n === "number")) {
      return Response.json({ error: "expected {\"numbers\": [number, ...]}" }, { status: 400 });
    }
    const sum = numbers.reduce((a, b) => a + b, 0);
    return Response.json({
      count: numbers.length,
      sum,
      mean: numbers.length ? sum / numbers.length : null,
    });
  },
};
