// Does not parse: error code 3. The call is still paid for the milliseconds it took to refuse.
export default { async fetch() { return new Response("x" }; };
