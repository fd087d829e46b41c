// The smallest reef serverless function: greets whoever the input names.
// Run it: reef fn dev examples/serverless/hello --input reef
export default {
  async fetch(request, env) {
    const name = (await request.text()) || "world";
    return new Response(`hello, ${name}!`);
  },
};
