"""The arq worker and the execution pipeline of one order."""
