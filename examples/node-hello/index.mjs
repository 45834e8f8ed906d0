// A Node.js function for Nimbus (and for AWS Lambda, unchanged): greets whoever the event
// names. An ES module with an async handler.

export const handler = async (event, context) => {
  if (event.fail) {
    throw new TypeError("asked to fail");
  }
  const name = event.name ?? "world";
  console.log(`greeting ${name}`);
  return {
    greeting: `${process.env.GREETING ?? "Hello"}, ${name}!`,
    requestId: context.awsRequestId,
    remainingMs: context.getRemainingTimeInMillis(),
    pid: process.pid,
  };
};
