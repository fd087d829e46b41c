// Does not parse: error code 3, the caller is not charged for reef's failure.
export default { async fetch() { return new Response("x" }; };
