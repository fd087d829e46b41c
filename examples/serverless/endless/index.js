// Never answers: reef kills it at its deadline (error code 4), other calls go on.
export default { async fetch() { while (true) {} } };
