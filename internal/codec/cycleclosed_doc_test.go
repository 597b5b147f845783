package codec_test

// cycleClosedDoc is the section of docs/events.md on the billing
// notification, which is published, not stored: it is no event of the
// catalogue.
const cycleClosedDoc = `
## CycleClosed (billing notification)

Not an event of a stream: when an account's monthly billing cycle has
ended, licensed publishes the cycle's final quantities once, from the
billing read model, on ` + "`events.billing.<account>.CycleClosed`" + ` in the
` + "`EVENTS`" + ` stream (` + "`billing.<account>.CycleClosed`" + ` downstream), as a
CloudEvents 1.0 structured JSON envelope (` + "`Content-Type: application/cloudevents+json`" + `):

- ` + "`type`" + `: ` + "`dev.licenseledger.billing.cycle_closed.v1`" + `; ` + "`source`" + `: ` + "`urn:licenseledger:account:<account>`" + `;
  ` + "`subject`" + `: the period, ` + "`YYYY-MM`" + `; ` + "`time`" + `: the cycle's end.
- ` + "`dataschema`" + `: ` + "`<public URL>/schemas/dev.licenseledger.billing.cycle_closed.v1.json`" + `,
  the JSON Schema (2020-12) served by licensed, like the events' schemas, and checked in
  as ` + "`docs/schemas/dev.licenseledger.billing.cycle_closed.v1.json`" + `.
- ` + "`id`" + `, also the ` + "`Nats-Msg-Id`" + `: a UUIDv5 of the account and the period, the same
  in every process and retry.
- ` + "`data`" + `: ` + "`account`, `period`, `index`, `start`, `end`, `cycle_days`, `seats_billed`, `purchases`" + `
  (prorated additions), ` + "`reductions`, `scheduled_reductions`, `peak_active`, `active_user_days`" + `
  and ` + "`totals`" + `, named and computed as ` + "`GET /v1/accounts/{account}/billing?period=`" + `
  answers them once the cycle is over; ` + "`GET /v1/billing?period=YYYY-MM`" + ` pages every
  account's.

A cycle is closed 2 minutes after its end, once the billing read model has
applied every event stored by then (each process looks every 30 seconds);
every ended cycle of an account is published, in order, also those that
ended while no process ran. Events are timed by the service's clock, which
only moves forward, when their command is decided: none can be back-dated
into a closed cycle. Each notification is published expecting its subject's
last sequence, so when two processes close the same cycle JetStream refuses
the second: exactly one final is stored per account and cycle. The copy in
` + "`EVENTS`" + ` keeps the ` + "`Nats-Expected-Last-Subject-Sequence`" + ` header JetStream checked;
mirrors drop it.
`
