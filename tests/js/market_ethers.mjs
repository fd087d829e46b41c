// An independent Ethereum client (ethers v6) against reef's devnet JSON-RPC endpoint.
//
// Usage: node market_ethers.mjs <rpc url> <artifacts dir> <market address> <token address>
// Prints one JSON object with what it saw; tests/chain/test_js_ethers.py checks it, and checks
// the chain state it left behind through web3.py.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Contract, HDNodeWallet, JsonRpcProvider, Mnemonic, NonceManager } from "ethers";

const [url, artifacts, marketAddress, tokenAddress] = process.argv.slice(2);
const MNEMONIC = "test test test test test test test test test test test junk";

function artifact(name) {
  return JSON.parse(readFileSync(join(artifacts, `${name}.json`), "utf8"));
}

function wallet(index, provider) {
  const phrase = Mnemonic.fromPhrase(MNEMONIC);
  return HDNodeWallet.fromMnemonic(phrase, `m/44'/60'/0'/0/${index}`).connect(provider);
}

async function main() {
  // cacheTimeout -1: ethers shares identical requests for 250 ms by default, so the last
  // getBlockNumber() could answer from before the last block.
  const provider = new JsonRpcProvider(url, undefined, { pollingInterval: 100, cacheTimeout: -1 });
  const out = {};
  const network = await provider.getNetwork();
  out.chainId = Number(network.chainId);
  out.blockNumberBefore = await provider.getBlockNumber();
  const latest = await provider.getBlock("latest");
  out.latestHasHash = typeof latest.hash === "string" && latest.hash.length === 66;
  out.baseFee = latest.baseFeePerGas.toString();
  const fees = await provider.getFeeData();
  out.maxPriorityFeePerGas = fees.maxPriorityFeePerGas.toString();

  const user = new NonceManager(wallet(7, provider));
  const host = new NonceManager(wallet(8, provider));
  out.userAddress = await user.getAddress();
  out.hostAddress = await host.getAddress();
  out.userEth = (await provider.getBalance(out.userAddress)).toString();

  const marketAbi = artifact("Market").abi;
  const market = new Contract(marketAddress, marketAbi, user);
  const token = new Contract(tokenAddress, artifact("Token").abi, user);

  // Reads.
  out.marketToken = await market.token();
  out.lockWaitTime = Number(await market.lockWaitTime(await market.RATE_LOCK_SELECTOR()));
  out.extraDecimals = Number(await market.EXTRA_DECIMALS());
  out.userTokens = (await token.balanceOf(out.userAddress)).toString();

  // Writes: the provider registers, the user approves and opens a job.
  const registered = await (await market.connect(host).providerAdd("http://127.0.0.1:8080")).wait();
  out.providerAddedStatus = registered.status;
  out.providerCp = await market.providers(out.hostAddress);
  await (await token.approve(marketAddress, 5_000_000n)).wait();

  // Subscribe before depositing: ethers polls eth_newFilter/eth_getFilterChanges.
  const deposited = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no JobDeposited event within 20 s")), 20_000);
    market.once("JobDeposited", (job, from, amount) => {
      clearTimeout(timer);
      resolve({ job, from, amount: amount.toString() });
    });
  });

  const openTx = await market.jobOpen("{\"from\":\"ethers\"}", out.hostAddress, 10n ** 12n, 2_000_000n);
  const openReceipt = await openTx.wait();
  out.openStatus = openReceipt.status;
  out.openBlock = openReceipt.blockNumber;
  out.openGasUsed = openReceipt.gasUsed.toString();
  const opened = openReceipt.logs
    .map((log) => { try { return market.interface.parseLog(log); } catch { return null; } })
    .find((parsed) => parsed && parsed.name === "JobOpened");
  out.jobId = opened.args.job;
  out.openedBalance = opened.args.balance.toString();
  out.openedOwner = opened.args.owner;
  const fetched = await provider.getTransaction(openTx.hash);
  out.txType = fetched.type;
  out.txFrom = fetched.from;

  // An event subscription sees a later transaction.
  await (await market.jobDeposit(out.jobId, 1_000_000n)).wait();
  out.depositEvent = await deposited;

  // History through eth_getLogs.
  const opens = await market.queryFilter(market.filters.JobOpened(), 0, "latest");
  out.jobOpenedCount = opens.length;

  // A revert surfaces with its reason: a non-zero rate job cannot close yet.
  try {
    await market.jobClose.staticCall(out.jobId);
    out.revert = null;
  } catch (error) {
    out.revert = { code: error.code, reason: error.reason ?? null };
  }
  try {
    await market.connect(host).jobWithdraw(out.jobId, 1n);
    out.sendRevert = null;
  } catch (error) {
    out.sendRevert = { code: error.code, reason: error.reason ?? null };
  }

  const job = await market.jobs(out.jobId);
  out.jobOnChain = {
    metadata: job[0],
    owner: job[1],
    provider: job[2],
    rate: job[3].toString(),
    balance: job[4].toString(),
  };
  out.blockNumberAfter = await provider.getBlockNumber();
  provider.destroy();
  console.log(JSON.stringify(out));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
